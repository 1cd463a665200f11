//! Scope parsing: tolerant of what real clients send, strict about what is granted.

/// The scopes to grant for a requested scope string.
///
/// Splits on any whitespace and drops empties (Claude.ai has sent `" offline_access"`), keeps the
/// configured scopes that were asked for, and ignores the rest (`claudeai`, `offline_access`: OAuth
/// 2.1 lets the server ignore scopes). If nothing known remains, grants `defaults`. The result keeps
/// the configured order and has no duplicates.
pub(crate) fn grant(
    requested: Option<&str>,
    configured: &[String],
    defaults: &[String],
) -> Vec<String> {
    let requested: Vec<&str> = requested
        .map(|s| s.split_whitespace().collect())
        .unwrap_or_default();
    let granted: Vec<String> = configured
        .iter()
        .filter(|scope| requested.contains(&scope.as_str()))
        .cloned()
        .collect();
    if granted.is_empty() {
        defaults.to_vec()
    } else {
        granted
    }
}

/// Narrow `held` to a requested subset on refresh. `Err` names a scope that was not held.
pub(crate) fn narrow(
    requested: Option<&str>,
    held: &[String],
    configured: &[String],
) -> Result<Vec<String>, String> {
    let Some(requested) = requested else {
        return Ok(held.to_vec());
    };
    let mut narrowed = Vec::new();
    for scope in requested.split_whitespace() {
        if held.iter().any(|h| h == scope) {
            if !narrowed.iter().any(|n: &String| n == scope) {
                narrowed.push(scope.to_owned());
            }
        } else if configured.iter().any(|c| c == scope) {
            return Err(scope.to_owned());
        }
        // Unknown scopes are ignored here too, for the same clients.
    }
    if narrowed.is_empty() {
        Ok(held.to_vec())
    } else {
        Ok(narrowed)
    }
}

/// Join scopes for the wire.
pub(crate) fn join(scopes: &[String]) -> String {
    scopes.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(list: &[&str]) -> Vec<String> {
        list.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn odd_client_strings_are_tolerated() {
        let configured = s(&["mcp", "admin"]);
        let defaults = s(&["mcp"]);
        assert_eq!(
            grant(Some(" offline_access"), &configured, &defaults),
            s(&["mcp"])
        );
        assert_eq!(grant(Some("claudeai"), &configured, &defaults), s(&["mcp"]));
        assert_eq!(grant(None, &configured, &defaults), s(&["mcp"]));
        assert_eq!(
            grant(Some("  admin\tmcp  admin "), &configured, &defaults),
            s(&["mcp", "admin"])
        );
        assert_eq!(
            grant(Some("admin unknown"), &configured, &defaults),
            s(&["admin"])
        );
    }

    #[test]
    fn narrowing_on_refresh() {
        let configured = s(&["mcp", "admin"]);
        let held = s(&["mcp", "admin"]);
        assert_eq!(narrow(None, &held, &configured), Ok(held.clone()));
        assert_eq!(narrow(Some("mcp"), &held, &configured), Ok(s(&["mcp"])));
        assert_eq!(
            narrow(Some("admin"), &s(&["mcp"]), &configured),
            Err("admin".into())
        );
        assert_eq!(
            narrow(Some("offline_access"), &held, &configured),
            Ok(held.clone())
        );
    }
}
