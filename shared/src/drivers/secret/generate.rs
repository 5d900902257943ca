//! How a secret's value is made: the item's `generate` settings, the
//! `GetRandomPassword` call that makes the value inside AWS, and the one tag
//! (`pao:generate`) that keeps the settings on the secret, so its rotation
//! function makes every later value the same way.

use std::fmt;

use aws_sdk_secretsmanager::Client;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use super::{boolean, integer};
use crate::action::ActionError;
use crate::aws::sdk;

/// The tag holding the settings, as `length=64 exclude=<base64> include-space`.
pub const TAG: &str = "pao:generate";

/// The longest value AWS accepts for a tag.
const TAG_VALUE_MAX: usize = 256;

/// The lengths the catalog schema allows.
pub const LENGTHS: std::ops::RangeInclusive<i64> = 16..=128;

/// The schema's default exclusions: quotes, `@`, `/` and backslash, which
/// break connection strings and shell lines.
pub const DEFAULT_EXCLUDE: &str = "\"'@/\\";

/// A secret's value. Nothing prints it: not `Debug`, not `Display`; it
/// leaves this process only as the `SecretString` of a Secrets Manager call.
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<hidden>)")
    }
}

/// What `GetRandomPassword` is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generate {
    pub length: i64,
    pub exclude_characters: String,
    pub include_space: bool,
    pub exclude_numbers: bool,
    pub exclude_punctuation: bool,
    pub exclude_uppercase: bool,
    pub exclude_lowercase: bool,
}

impl Default for Generate {
    fn default() -> Self {
        Self {
            length: 32,
            exclude_characters: DEFAULT_EXCLUDE.to_string(),
            include_space: false,
            exclude_numbers: false,
            exclude_punctuation: false,
            exclude_uppercase: false,
            exclude_lowercase: false,
        }
    }
}

/// The boolean settings, by their name in the config and in the tag.
const FLAGS: [(&str, &str); 5] = [
    ("include_space", "include-space"),
    ("exclude_numbers", "exclude-numbers"),
    ("exclude_punctuation", "exclude-punctuation"),
    ("exclude_uppercase", "exclude-uppercase"),
    ("exclude_lowercase", "exclude-lowercase"),
];

impl Generate {
    /// The rendered `generate` of a config: a mapping, or `true` for the
    /// defaults. `None` when it is absent or `false`.
    pub fn from_config(value: &Value) -> Result<Option<Self>, String> {
        let settings = match value {
            Value::Null | Value::Bool(false) => return Ok(None),
            Value::Bool(true) => return Ok(Some(Self::default())),
            Value::String(text) if text.trim() == "false" => return Ok(None),
            Value::String(text) if text.trim() == "true" => return Ok(Some(Self::default())),
            Value::Object(settings) => settings,
            _ => return Err("generate: must be a mapping, or true".to_string()),
        };
        let mut generate = Self::default();
        for (key, value) in settings {
            let at = format!("generate.{key}");
            match key.as_str() {
                "length" => generate.length = integer(value, &at)?,
                "exclude_characters" => {
                    generate.exclude_characters = value
                        .as_str()
                        .ok_or_else(|| format!("{at}: must be a string"))?
                        .to_string();
                }
                other => *generate.flag(other).ok_or_else(|| {
                    format!("{at}: not a setting (length, exclude_characters, include_space, exclude_numbers, exclude_punctuation, exclude_uppercase, exclude_lowercase)")
                })? = boolean(value, &at)?,
            }
        }
        generate.check().map(|()| Some(generate))
    }

    fn flag(&mut self, name: &str) -> Option<&mut bool> {
        match name {
            "include_space" => Some(&mut self.include_space),
            "exclude_numbers" => Some(&mut self.exclude_numbers),
            "exclude_punctuation" => Some(&mut self.exclude_punctuation),
            "exclude_uppercase" => Some(&mut self.exclude_uppercase),
            "exclude_lowercase" => Some(&mut self.exclude_lowercase),
            _ => None,
        }
    }

    fn check(&self) -> Result<(), String> {
        if !LENGTHS.contains(&self.length) {
            return Err(format!(
                "generate.length: {} is not between {} and {}",
                self.length,
                LENGTHS.start(),
                LENGTHS.end()
            ));
        }
        if self.exclude_numbers
            && self.exclude_punctuation
            && self.exclude_uppercase
            && self.exclude_lowercase
            && !self.include_space
        {
            return Err("generate: every kind of character is excluded".to_string());
        }
        Ok(())
    }

    /// The settings as the value of the tag [`TAG`]. The exclusions are
    /// base64, as quotes and backslashes are not safe in a tag value.
    pub fn to_tag(&self) -> Result<String, String> {
        let mut words = vec![format!("length={}", self.length)];
        if !self.exclude_characters.is_empty() {
            words.push(format!(
                "exclude={}",
                STANDARD.encode(self.exclude_characters.as_bytes())
            ));
        }
        let mut copy = self.clone();
        for (name, word) in FLAGS {
            if copy.flag(name).is_some_and(|set| *set) {
                words.push(word.to_string());
            }
        }
        let tag = words.join(" ");
        if tag.len() > TAG_VALUE_MAX {
            return Err(format!(
                "generate.exclude_characters: too long to be kept on the secret for its rotation ({} characters; the tag {TAG} holds {TAG_VALUE_MAX})",
                tag.len()
            ));
        }
        Ok(tag)
    }

    /// Reads the tag [`TAG`] back; anything it does not say is off (the
    /// exclusions: none).
    pub fn from_tag(tag: &str) -> Result<Self, String> {
        let mut generate = Self {
            exclude_characters: String::new(),
            ..Self::default()
        };
        for word in tag.split_whitespace() {
            match word.split_once('=') {
                Some(("length", length)) => {
                    generate.length = length
                        .parse()
                        .map_err(|_| format!("{TAG}: length `{length}` is not a number"))?;
                }
                Some(("exclude", encoded)) => {
                    let bytes = STANDARD
                        .decode(encoded)
                        .map_err(|_| format!("{TAG}: exclude is not base64"))?;
                    generate.exclude_characters = String::from_utf8(bytes)
                        .map_err(|_| format!("{TAG}: exclude is not UTF-8 text"))?;
                }
                _ => {
                    let name = FLAGS
                        .iter()
                        .find(|(_, flag)| *flag == word)
                        .map(|(name, _)| *name)
                        .ok_or_else(|| format!("{TAG}: `{word}` is not a setting"))?;
                    if let Some(set) = generate.flag(name) {
                        *set = true;
                    }
                }
            }
        }
        generate.check().map(|()| generate)
    }

    /// A new value, made by Secrets Manager: it never passes through
    /// anything but this call's answer and the call that stores it.
    pub async fn password(&self, client: &Client) -> Result<SecretValue, ActionError> {
        let answer = client
            .get_random_password()
            .password_length(self.length)
            .set_exclude_characters(
                (!self.exclude_characters.is_empty()).then(|| self.exclude_characters.clone()),
            )
            .include_space(self.include_space)
            .exclude_numbers(self.exclude_numbers)
            .exclude_punctuation(self.exclude_punctuation)
            .exclude_uppercase(self.exclude_uppercase)
            .exclude_lowercase(self.exclude_lowercase)
            .send()
            .await
            .map_err(|err| sdk::failed("Secrets Manager", "GetRandomPassword", &err))?;
        match answer.random_password() {
            Some(password) if !password.is_empty() => Ok(SecretValue::new(password.to_string())),
            _ => Err(ActionError::Retryable(
                "Secrets Manager GetRandomPassword answered without a password".to_string(),
            )),
        }
    }
}
