//! The string formats a form's schema declares, defined so that the requests
//! API and the portal (react-jsonschema-form with `@rjsf/validator-ajv8`)
//! accept exactly the same values. `date`, `date-time`, `email` and `uri`
//! mean what ajv-formats 2 (full mode) checks and `data-url` what
//! `@rjsf/validator-ajv8` checks, since every RJSF portal registers those;
//! `json` and `yaml` are PAO's own, which a portal registers from
//! `catalog/portal/formats.mjs`. Each check here follows the portal's
//! definition, quirks included: where PAO wants more (a time zone, base64
//! content), the form says so with a `pattern`, which both sides evaluate.
//! Owns those definitions; which field type declares which format is `form`'s.

use std::sync::LazyLock;

use crate::catalog::source::{self, Limits};

pub const DATE: &str = "date";
pub const DATE_TIME: &str = "date-time";
pub const EMAIL: &str = "email";
pub const URI: &str = "uri";
pub const DATA_URL: &str = "data-url";
pub const JSON: &str = "json";
pub const YAML: &str = "yaml";

/// Whether a string is of a format.
pub type Check = fn(&str) -> bool;

/// Every format a form declares, with its check.
pub const ALL: [(&str, Check); 7] = [
    (DATE, date),
    (DATE_TIME, date_time),
    (EMAIL, email),
    (URI, uri),
    (DATA_URL, data_url),
    (JSON, json),
    (YAML, yaml),
];

/// What a value of `format` must be, in words for an error message.
pub fn expectation(format: &str) -> &'static str {
    match format {
        DATE => "a date (YYYY-MM-DD)",
        DATE_TIME => "a date and time (RFC 3339, such as 1999-12-31T23:59:00Z)",
        EMAIL => "an email address",
        URI => "an absolute URL",
        DATA_URL => "a file as a data URL (data:<type>;base64,<content>)",
        JSON => "valid JSON",
        YAML => "valid YAML (one document)",
        _ => "in the expected format",
    }
}

/// `YYYY-MM-DD`, a day that exists.
pub fn date(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) =
        (digits(&text[..4]), digits(&text[5..7]), digits(&text[8..]))
    else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => 0,
    };
    (1..=days).contains(&day)
}

/// A date and a time split by `T`, `t` or one whitespace character, as
/// ajv-formats 2 checks it: the time zone may be left out there (the form's
/// `pattern` requires it) and its offset is not range-checked.
pub fn date_time(text: &str) -> bool {
    let mut parts = text.split(|c| c == 'T' || c == 't' || is_js_whitespace(c));
    match (parts.next(), parts.next(), parts.next()) {
        (Some(day), Some(time), None) => date(day) && time_of_day(time),
        _ => false,
    }
}

/// `HH:MM:SS[.fraction][Z|±HH[[:]MM]]`; a leap second only as 23:59:60.
fn time_of_day(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() < 8 || bytes[2] != b':' || bytes[5] != b':' {
        return false;
    }
    let number = |range| text.get(range).and_then(digits);
    let (Some(hour), Some(minute), Some(second), Some(mut rest)) =
        (number(0..2), number(3..5), number(6..8), text.get(8..))
    else {
        return false;
    };
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return false;
        }
        rest = &fraction[end..];
    }
    let zone = match rest.as_bytes() {
        [] | [b'z' | b'Z'] => true,
        [b'+' | b'-', offset @ ..] => match offset {
            [h1, h2] | [h1, h2, _, _] | [h1, h2, b':', _, _] => {
                let minutes = &offset[offset.len() - 2..];
                h1.is_ascii_digit()
                    && h2.is_ascii_digit()
                    && (offset.len() == 2 || minutes.iter().all(u8::is_ascii_digit))
            }
            _ => false,
        },
        _ => false,
    };
    zone && ((hour <= 23 && minute <= 59 && second <= 59)
        || (hour == 23 && minute == 59 && second == 60))
}

/// JavaScript's `\s`: what `String.prototype.split(/\s/)` splits on.
fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

/// ASCII digits as a number; `None` for anything else, or nothing.
fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `local@domain`: dot-separated atoms of RFC 5322 `atext`, then a host name
/// of at least two labels (letters, digits, inner hyphens). ASCII only.
pub fn email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let local = local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(atext));
    let label = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    local && domain.contains('.') && domain.split('.').all(label)
}

/// An absolute URI by RFC 3986's `URI` rule, as ajv-formats 2 reads it:
/// ASCII only, letters in any case, an IPv4 octet may have leading zeros,
/// `scheme:/host` counts as an authority, and the path after `scheme:` may
/// not be empty.
pub fn uri(text: &str) -> bool {
    static URI: LazyLock<Option<fancy_regex::Regex>> =
        LazyLock::new(|| fancy_regex::Regex::new(&uri_pattern()).ok());
    text.is_ascii()
        && URI
            .as_ref()
            .is_some_and(|uri| uri.is_match(text).unwrap_or(false))
}

/// The rule of [`uri`], assembled from RFC 3986's ABNF.
fn uri_pattern() -> String {
    const UNRESERVED: &str = r"a-z0-9._~\-";
    const SUB_DELIMS: &str = "!$&'()*+,;=";
    let pct = "%[0-9a-f]{2}";
    let pchar = format!("(?:[{UNRESERVED}{SUB_DELIMS}:@]|{pct})");
    let h16 = "[0-9a-f]{1,4}";
    let octet = "(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)";
    let ls32 = format!(r"(?:{h16}:{h16}|(?:{octet}\.){{3}}{octet})");
    // The nine forms of `IPv6address`: up to `n` pieces before `::`.
    let before = |n: usize| format!("(?:(?:{h16}:){{0,{n}}}{h16})?");
    let ipv6 = [
        format!("(?:{h16}:){{6}}{ls32}"),
        format!("::(?:{h16}:){{5}}{ls32}"),
        format!("(?:{h16})?::(?:{h16}:){{4}}{ls32}"),
        format!("{}::(?:{h16}:){{3}}{ls32}", before(1)),
        format!("{}::(?:{h16}:){{2}}{ls32}", before(2)),
        format!("{}::{h16}:{ls32}", before(3)),
        format!("{}::{ls32}", before(4)),
        format!("{}::{h16}", before(5)),
        format!("{}::", before(6)),
    ]
    .join("|");
    let ip_future = format!(r"v[0-9a-f]+\.[{UNRESERVED}{SUB_DELIMS}:]+");
    // An IPv4 address is also a `reg-name`, so it needs no rule of its own.
    let reg_name = format!("(?:[{UNRESERVED}{SUB_DELIMS}]|{pct})*");
    let userinfo = format!("(?:[{UNRESERVED}{SUB_DELIMS}:]|{pct})*@");
    let authority = format!(
        r"/?/(?:{userinfo})?(?:\[(?:{ipv6}|{ip_future})\]|{reg_name})(?::[0-9]*)?(?:/{pchar}*)*"
    );
    let absolute = format!("/(?:{pchar}+(?:/{pchar}*)*)?");
    let rootless = format!("{pchar}+(?:/{pchar}*)*");
    let tail = format!("(?:{pchar}|[/?])*");
    format!(
        r"(?i)^[a-z][a-z0-9+.\-]*:(?:{authority}|{absolute}|{rootless})(?:\?{tail})?(?:#{tail})?$"
    )
}

/// `data:[<type>/<subtype>];[name=<name>;]base64,<content>`, as
/// `@rjsf/validator-ajv8` checks it: the media type in lower case, and no
/// line break anywhere (its `.` stops at one). The content is not checked
/// here; the form's `pattern` requires base64.
pub fn data_url(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("data:") else {
        return false;
    };
    let Some((media_type, rest)) = rest.split_once(';') else {
        return false;
    };
    let media_type = media_type.is_empty()
        || media_type.split_once('/').is_some_and(|(kind, subtype)| {
            !kind.is_empty()
                && kind.bytes().all(|b| b.is_ascii_lowercase())
                && !subtype.is_empty()
                && subtype
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-+.".contains(&b))
        });
    let line_break = |c: char| matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}');
    let shape = rest.starts_with("base64,")
        || rest
            .strip_prefix("name=")
            .is_some_and(|named| named.contains(";base64,"));
    media_type && shape && !rest.contains(line_break)
}

/// JSON text (RFC 8259), what `JSON.parse` accepts: checked for syntax only,
/// so nesting depth, number range and lone surrogates are not limits.
pub fn json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// One YAML document that PAO's catalog reader takes: within its limits
/// (size, depth, aliases), no duplicate keys, numbers JSON can hold.
pub fn yaml(text: &str) -> bool {
    source::parse_unlocated(text.as_bytes(), &Limits::default()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_rule_compiles() {
        assert!(fancy_regex::Regex::new(&uri_pattern()).is_ok());
        assert!(uri("https://example.com/a?b#c"));
    }
}
