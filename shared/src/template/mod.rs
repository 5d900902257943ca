//! Templates in catalog items (Tera syntax): `{{fields.x}}`, `{{header.owner}}`,
//! `{{request.id}}`, `{{env.NAME}}`, `{{response.action.output}}`. This module
//! owns the template language: checking a template's syntax and finding the
//! variables it references, so catalog validation can reject a reference to
//! something that cannot exist before any request runs.

use std::collections::BTreeSet;

pub mod render;

/// A variable a template reads, as its dotted path: `["response", "db", "endpoint"]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference(pub Vec<String>);

impl Reference {
    pub fn root(&self) -> &str {
        &self.0[0]
    }

    pub fn dotted(&self) -> String {
        self.0.join(".")
    }
}

/// Whether `text` holds template syntax at all; plain strings skip the parser.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Checks the syntax of `text` and returns the variables it reads, in order
/// of the text, each once. Loop and `set` variables are local, not references.
pub fn references(text: &str) -> Result<Vec<Reference>, String> {
    if !is_template(text) {
        return Ok(Vec::new());
    }
    if let Some(paths) = filtered_paths(text) {
        let mut found: Vec<Reference> = Vec::new();
        for path in paths {
            let reference = Reference(path.split('.').map(str::to_string).collect());
            if !found.contains(&reference) {
                found.push(reference);
            }
        }
        return Ok(found);
    }
    // Parsing alone: a whole `Tera` (with its filters and functions) per
    // string would cost more than the parse.
    tera::Template::new("t", None, text).map_err(|err| syntax_message(&err))?;
    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    let mut locals = BTreeSet::new();
    for (block, is_statement) in blocks(text) {
        scan(block, is_statement, &mut locals, &mut |reference| {
            if seen.insert(reference.clone()) {
                found.push(reference);
            }
        })?;
    }
    Ok(found)
}

/// Namespaces whose values a requester chooses or influences.
pub fn is_user_namespace(root: &str) -> bool {
    matches!(root, "fields" | "request" | "response")
}

/// A URL may read the requester's values only as plain placeholders,
/// which rendering percent-encodes one by one: through a filter or a
/// condition they could move the host or start a query.
pub fn check_url(text: &str) -> Result<(), String> {
    if simple(text).is_some() {
        return Ok(());
    }
    // A template that does not parse is reported as such elsewhere.
    let Ok(references) = references(text) else {
        return Ok(());
    };
    match references.iter().find(|r| is_user_namespace(r.root())) {
        Some(user) => Err(format!(
            "`{0}` in a URL must be a plain placeholder, such as {{{{{0}}}}}, so that it can be encoded",
            user.dotted()
        )),
        None => Ok(()),
    }
}

/// The namespaces a template reads; nothing may rebind them.
pub const NAMESPACES: [&str; 5] = ["fields", "header", "request", "env", "response"];

/// A part of a simple template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    Text(&'a str),
    /// A dotted variable path, such as `fields.name`.
    Path(&'a str),
}

/// The pieces of a template made only of text and `{{ dotted.path }}`
/// placeholders, the form nearly every catalog string takes; `None` for
/// anything else (filters, statements, comments, literals), which goes
/// to Tera. Recognising the simple form directly costs a scan instead of a
/// parse, for validation and rendering alike.
pub(crate) fn simple(text: &str) -> Option<Vec<Piece<'_>>> {
    if text.contains("{%") || text.contains("{#") {
        return None;
    }
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let path = after[..end].trim();
        if !is_dotted_path(path) {
            return None;
        }
        pieces.push(Piece::Path(path));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Some(pieces)
}

/// The paths of a template whose blocks are all `{{ path }}` or
/// `{{ path | filter | filter(name="literal", n=3) }}`, the forms catalog
/// items use; `None` for anything else, which Tera's parser then checks.
/// Syntax only: Tera too learns whether a filter exists when it renders.
fn filtered_paths(text: &str) -> Option<Vec<&str>> {
    if text.contains("{%") || text.contains("{#") {
        return None;
    }
    let mut paths = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let mut stages = after[..end].split('|');
        let path = stages.next()?.trim();
        if !is_dotted_path(path) || !stages.all(is_filter) {
            return None;
        }
        paths.push(path);
        rest = &after[end + 2..];
    }
    Some(paths)
}

/// `name` or `name(arg=literal, ...)` with string, number or boolean literals.
fn is_filter(stage: &str) -> bool {
    let stage = stage.trim();
    let is_ident = |text: &str| {
        text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let Some(open) = stage.find('(') else {
        return is_ident(stage);
    };
    let (name, arguments) = (&stage[..open], &stage[open + 1..]);
    let Some(arguments) = arguments.strip_suffix(')') else {
        return false;
    };
    is_ident(name.trim())
        && arguments
            .split(',')
            .all(|argument| match argument.split_once('=') {
                Some((key, value)) => is_ident(key.trim()) && is_literal(value.trim()),
                None => false,
            })
}

fn is_literal(value: &str) -> bool {
    let quoted = |quote: char| {
        value.len() >= 2
            && value.starts_with(quote)
            && value.ends_with(quote)
            && !value[1..value.len() - 1].contains([quote, '\\', ',', '|', '(', ')'])
    };
    quoted('"')
        || quoted('\'')
        || matches!(value, "true" | "false")
        || value.parse::<f64>().is_ok_and(f64::is_finite)
}

/// `name(.name|.index)*` where the first name is not a keyword or literal.
fn is_dotted_path(path: &str) -> bool {
    let mut segments = path.split('.');
    let Some(first) = segments.next() else {
        return false;
    };
    let is_name = |segment: &str| {
        segment.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let is_index =
        |segment: &str| !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit());
    is_name(first)
        && !KEYWORDS.contains(&first)
        && segments.all(|segment| is_name(segment) || is_index(segment))
}

fn syntax_message(err: &tera::Error) -> String {
    use std::error::Error as _;
    // Tera's own message names our internal template; its cause has the
    // position (`--> 1:20`) and the reason (`= expected …`) between drawings.
    let detail = match err.source() {
        Some(cause) => cause.to_string(),
        None => err.to_string(),
    };
    let position = detail
        .lines()
        .find_map(|line| line.trim().strip_prefix("--> "))
        .and_then(|position| position.split(':').nth(1))
        .map(|column| format!(" at character {column}"))
        .unwrap_or_default();
    let reason = detail
        .lines()
        .find_map(|line| line.trim().strip_prefix("= "))
        .unwrap_or("unexpected input");
    format!("invalid template syntax{position}: {reason}")
}

/// The insides of `{{ … }}` and `{% … %}` blocks (comments skipped).
fn blocks(text: &str) -> Vec<(&str, bool)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start..];
        let (close, is_statement) = if after.starts_with("{{") {
            ("}}", false)
        } else if after.starts_with("{%") {
            ("%}", true)
        } else if after.starts_with("{#") {
            ("#}", true)
        } else {
            rest = &rest[start + 1..];
            continue;
        };
        let inner = &after[2..];
        let Some(end) = inner.find(close) else { break };
        if !after.starts_with("{#") {
            blocks.push((inner[..end].trim_matches('-'), is_statement));
        }
        rest = &inner[end + 2..];
    }
    blocks
}

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "elif",
    "endif",
    "for",
    "endfor",
    "set",
    "set_global",
    "true",
    "false",
    "True",
    "False",
    "none",
    "None",
    "loop",
    "filter",
    "endfilter",
    "raw",
    "endraw",
    "break",
    "continue",
    "as",
    "with",
    "macro",
    "endmacro",
    "block",
    "endblock",
    "include",
    "import",
    "extends",
    "self",
    "super",
];

/// Finds the dotted names of one block, skipping string literals, filters,
/// tests, keyword arguments and local variables. Refuses what could reach
/// past the namespaces: function calls (Tera's `get_env` reads any variable
/// of the process), names Tera reserves (`__tera_context` is the whole
/// context), and a loop or `set` rebinding a namespace (which would hide
/// `env.NAME` from the checks).
fn scan(
    block: &str,
    is_statement: bool,
    locals: &mut BTreeSet<String>,
    emit: &mut dyn FnMut(Reference),
) -> Result<(), String> {
    let tokens = tokenize(block);
    if is_statement {
        // `for x in …`, `for k, v in …` and `set x = …` introduce local names.
        if let [first, rest @ ..] = tokens.as_slice() {
            if first == "for" || first == "set" || first == "set_global" {
                let bound = rest
                    .iter()
                    .take_while(|t| *t != "in" && *t != "=")
                    .filter(|t| *t != ",");
                for name in bound {
                    if NAMESPACES.contains(&name.as_str()) {
                        return Err(format!(
                            "`{first} {name}` would hide the {name} namespace: use another name"
                        ));
                    }
                    locals.insert(name.clone());
                }
            }
        }
    }
    for (index, token) in tokens.iter().enumerate() {
        let at = |offset: usize| index.checked_sub(offset).and_then(|i| tokens.get(i));
        let previous = at(1).map_or("", String::as_str);
        let next = tokens.get(index + 1).map(String::as_str);
        let is_name = token.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        if is_name && token.starts_with("__") {
            return Err(format!("`{token}` is not available in templates"));
        }
        // `x | filter(…)`, `x is test(…)`, `x is not test`.
        let is_filter_or_test = previous == "|"
            || previous == "is"
            || (previous == "not" && at(2).is_some_and(|t| t == "is"));
        if is_name && next == Some("(") && !is_filter_or_test {
            return Err(format!(
                "`{token}(…)`: templates cannot call functions; read configuration as {{{{env.NAME}}}}"
            ));
        }
        // `name=value` inside a call, not `a == b`.
        let is_argument =
            next == Some("=") && tokens.get(index + 2).map(String::as_str) != Some("=");
        if is_name && !is_filter_or_test && !is_argument && !KEYWORDS.contains(&token.as_str()) {
            let path: Vec<String> = token.split('.').map(str::to_string).collect();
            if !locals.contains(&path[0]) {
                emit(Reference(path));
            }
        }
    }
    Ok(())
}

/// Splits a block into names (with their dots), punctuation and numbers;
/// string literals are dropped.
fn tokenize(block: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = block.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\'' || c == '`' {
            for inner in chars.by_ref() {
                if inner == c {
                    break;
                }
            }
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let mut token = c.to_string();
            while let Some(&next) = chars.peek() {
                if next.is_ascii_alphanumeric() || next == '_' || next == '.' {
                    token.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(token.trim_end_matches('.').to_string());
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dotted(text: &str) -> Vec<String> {
        references(text)
            .unwrap()
            .iter()
            .map(Reference::dotted)
            .collect()
    }

    #[test]
    fn plain_text_has_no_references() {
        assert!(dotted("just text, {braces} and all").is_empty());
    }

    #[test]
    fn finds_every_namespace() {
        assert_eq!(
            dotted("{{fields.name}}-{{ header.owner }} by {{request.user.email}} {{env.DBAAS_URL}}/{{response.db.id}}"),
            ["fields.name", "header.owner", "request.user.email", "env.DBAAS_URL", "response.db.id"]
        );
    }

    #[test]
    fn skips_filters_arguments_literals_and_locals() {
        assert_eq!(
            dotted(
                r#"{{ fields.name | upper | default(value="x.y") }}{% for t in fields.tags %}{{ t }}{% endfor %}{% if fields.ha and not fields.small %}ha{% endif %}"#
            ),
            ["fields.name", "fields.tags", "fields.ha", "fields.small"]
        );
    }

    #[test]
    fn reports_each_reference_once() {
        assert_eq!(dotted("{{fields.a}}{{fields.a}}"), ["fields.a"]);
    }

    #[test]
    fn simple_templates_are_recognised_without_the_parser() {
        assert_eq!(
            simple("db-{{ request.id }}/{{fields.tags.0}}"),
            Some(vec![
                Piece::Text("db-"),
                Piece::Path("request.id"),
                Piece::Text("/"),
                Piece::Path("fields.tags.0"),
            ])
        );
        for complex in [
            "{{ fields.a | upper }}",
            "{{ true }}",
            "{{ 'x' }}",
            "{{- fields.a }}",
            "{% if fields.a %}x{% endif %}",
            "{{ fields.a }",
            "{{ fields..a }}",
            "{{ 0.a }}",
        ] {
            assert_eq!(simple(complex), None, "{complex}");
        }
    }

    #[test]
    fn filtered_templates_are_checked_without_the_parser() {
        for (text, paths) in [
            ("{{ fields.a | upper }}", vec!["fields.a"]),
            (
                r#"{{fields.v | default(value='')}}-{{ fields.w|default(value="n/a") | lower }}"#,
                vec!["fields.v", "fields.w"],
            ),
            ("{{ fields.n | round(precision=2) }}", vec!["fields.n"]),
        ] {
            assert_eq!(filtered_paths(text), Some(paths), "{text}");
            // Tera agrees that it is valid.
            assert!(tera::Template::new("t", None, text).is_ok(), "{text}");
        }
        // Anything else is left to Tera's parser, which explains errors.
        for text in [
            "{{ fields.a | }}",
            "{{ fields.a | upper( }}",
            "{{ fields.a | default(value=) }}",
            "{{ fields.a | default(value='x) }}",
            "{{ fields.a | default('x') }}",
            "{{ fields.a | join(sep=',') }}",
            "{{ fields.a ~ 'x' }}",
            "{% if fields.a %}{% endif %}",
        ] {
            assert_eq!(filtered_paths(text), None, "{text}");
        }
        assert!(references("{{ fields.a | upper( }}").is_err());
    }

    #[test]
    fn a_syntax_error_is_explained() {
        let err = references("{{ fields.name ").unwrap_err();
        assert!(err.starts_with("invalid template syntax"), "{err}");
        assert!(references("{% if fields.x %}unclosed").is_err());
    }
}
