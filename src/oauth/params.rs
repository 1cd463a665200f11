//! Form and query parameters with the OAuth 2.1 rules: an empty value is the same as absent, and a
//! parameter given twice is an error.

use std::collections::HashMap;

use super::OAuthError;

/// Parsed `application/x-www-form-urlencoded` parameters.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// Parse a form body or query string.
    ///
    /// # Errors
    ///
    /// `invalid_request` if a parameter appears more than once, or the input is not valid UTF-8.
    pub(crate) fn parse(input: &[u8]) -> Result<Self, OAuthError> {
        if std::str::from_utf8(input).is_err() {
            return Err(OAuthError::invalid_request(
                "parameters are not valid UTF-8",
            ));
        }
        let mut map = HashMap::new();
        for (key, value) in form_urlencoded::parse(input) {
            if value.is_empty() {
                continue;
            }
            if map.insert(key.to_string(), value.into_owned()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{}` was given more than once",
                    printable(&key)
                )));
            }
        }
        Ok(Self(map))
    }

    /// The value, if present and non-empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value, or `invalid_request` naming the missing parameter.
    pub(crate) fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter `{name}`")))
    }
}

/// A client-supplied string made safe for an `error_description` (RFC 6749 allows only printable
/// ASCII minus `"` and `\`) and cut short.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\' || *c == ' ')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_absent() {
        let params = Params::parse(b"a=&b=1").unwrap();
        assert_eq!(params.get("a"), None);
        assert_eq!(params.get("b"), Some("1"));
    }

    #[test]
    fn repeated_parameters_are_refused() {
        let err = Params::parse(b"code=1&code=2").unwrap_err();
        assert!(err.description.contains("code"));
    }

    #[test]
    fn percent_decoding_and_plus() {
        let params = Params::parse(b"scope=+offline_access%20mcp").unwrap();
        assert_eq!(params.get("scope"), Some(" offline_access mcp"));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert!(Params::parse(&[0x61, 0x3d, 0xff]).is_err());
    }

    #[test]
    fn printable_strips_quotes_and_controls() {
        assert_eq!(printable("a\"b\\c\nd"), "abcd");
    }
}
