//! Form and query parameters with the OAuth 2.1 rules: an empty value is the same as absent, and a
//! parameter given twice is an error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::OAuthError;

/// Parsed `application/x-www-form-urlencoded` parameters, borrowed from the input where nothing
/// needed decoding (the usual case: tokens, codes and ids are URL-safe).
#[derive(Default)]
pub(crate) struct Params<'a>(HashMap<Cow<'a, str>, Cow<'a, str>>);

/// The names only: values include client secrets, codes, verifiers and tokens.
impl std::fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.0.keys().map(|name| name.as_ref()).collect();
        names.sort_unstable();
        f.debug_tuple("Params").field(&names).finish()
    }
}

impl<'a> Params<'a> {
    /// Parse a form body or query string.
    ///
    /// # Errors
    ///
    /// `invalid_request` if a parameter appears more than once, or the input is not valid UTF-8.
    pub(crate) fn parse(input: &'a [u8]) -> Result<Self, OAuthError> {
        let Ok(input) = std::str::from_utf8(input) else {
            return Err(OAuthError::invalid_request(
                "parameters are not valid UTF-8",
            ));
        };
        let mut map = HashMap::new();
        for pair in input.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (key, value) = (decode(key), decode(value));
            if value.is_empty() {
                continue;
            }
            match map.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    return Err(OAuthError::invalid_request(format!(
                        "parameter `{}` was given more than once",
                        printable(slot.key())
                    )));
                }
            }
        }
        Ok(Self(map))
    }

    /// The value, if present and non-empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|value| value.as_ref())
    }

    /// The value, or `invalid_request` naming the missing parameter.
    pub(crate) fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter `{name}`")))
    }
}

/// One name or value, decoded as `application/x-www-form-urlencoded` says (`+` is a space, then
/// percent-decoding, then UTF-8 with replacement characters); borrowed when there is nothing to
/// decode, as for tokens, codes and ids.
fn decode(text: &str) -> Cow<'_, str> {
    // Bytes, not chars: a client assertion is a kilobyte, and `%` and `+` are ASCII.
    if !text.bytes().any(|byte| matches!(byte, b'%' | b'+')) {
        return Cow::Borrowed(text);
    }
    let spaced = if text.contains('+') {
        Cow::Owned(text.replace('+', " "))
    } else {
        Cow::Borrowed(text)
    };
    Cow::Owned(
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned(),
    )
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
    fn decoding_matches_the_form_urlencoded_crate() {
        let agrees = |input: &str| {
            let ours: Vec<(String, String)> = input
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(key).into_owned(), decode(value).into_owned())
                })
                .collect();
            let reference: Vec<(String, String)> = form_urlencoded::parse(input.as_bytes())
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect();
            assert_eq!(ours, reference, "{input:?}");
        };
        for input in [
            "a=b&c=d",
            "a%3Db=c%26d",
            "x=%2B+%20",
            "bad=%zz%4",
            "e=%C3%A9&f=%FF",
            "&&k&=v&==",
            "token=mcp_rt_abc-_XYZ",
        ] {
            agrees(input);
        }
        proptest::proptest!(|(input in "[a-z=&%+0-9A-F\\x{e9}]{0,40}")| agrees(&input));
    }

    #[test]
    fn debug_shows_names_never_values() {
        let params =
            Params::parse(b"client_id=c&client_secret=s3cret-value&code=mcp_ac_x").unwrap();
        let output = format!("{params:?}");
        assert!(output.contains("client_secret"), "{output}");
        for value in ["s3cret-value", "mcp_ac_x"] {
            assert!(!output.contains(value), "{output}");
        }
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
