//! [`ScopePolicy`]: which scopes each MCP method or tool needs (step-up authorization), and reading the
//! methods a JSON-RPC request body asks for. No HTTP here: the bearer guard reads the body and asks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The JSON-RPC method whose `params.name` names a tool.
const TOOLS_CALL: &str = "tools/call";

/// Scopes an application requires for particular MCP methods and tools: step-up authorization.
///
/// A token that lacks a scope one of the request's messages needs gets `403` with
/// `WWW-Authenticate: Bearer error="insufficient_scope", scope="…", resource_metadata="…"`; the
/// client authorizes again for the wider scope (the owner approves once more) and retries.
///
/// ```
/// use mcp_oauth::ScopePolicy;
///
/// let policy = ScopePolicy::new()
///     .method("resources/write", ["files:write"]) // any message with this method
///     .tool("delete_repo", ["admin"])             // `tools/call` with `params.name` = delete_repo
///     .implies("admin", ["files:write"]);         // a token with `admin` may also write files
/// assert_eq!(policy.scopes_for("tools/call", Some("delete_repo")), ["admin"]);
/// assert!(policy.scopes_for("tools/list", None).is_empty());
/// ```
///
/// Give it to [`McpOAuthBuilder::scope_policy`](crate::McpOAuthBuilder::scope_policy) (checked
/// against the configured scopes when the layer is built) or to
/// [`BearerLayer::scope_policy`](crate::BearerLayer::scope_policy).
///
/// Only what is listed needs more than a valid token: a method or tool without a rule (above all
/// `initialize`, `notifications/*`, `tools/list` and `ping`, which clients call right after
/// connecting) passes with any valid token. A rule for `tools/call` itself applies to every tool
/// call, on top of the tool's own rule.
///
/// How requests are read (only when the policy has a rule):
///
/// - `POST` requests with a JSON media type (`application/json`, `application/…+json`) are read,
///   up to [`max_body_bytes`](ScopePolicy::max_body_bytes), as one JSON-RPC message or a batch; every
///   message's needs count, so a batch needs the union. The body is then handed on unchanged.
/// - Such a body that is larger gets `413`, one that is not valid JSON or not JSON-RPC messages
///   (a method that is not a string, a duplicated `method`, `params` or tool `name` key, a batch
///   element that is not an object) gets `400`, and a compressed one (`Content-Encoding`) gets `415`,
///   all with an RFC 6749-shaped `invalid_request` body: the policy cannot tell what such a body
///   asks for, and a more lenient parser behind it might find a method in it, so it never reaches
///   the MCP server.
/// - The 2026-07-28 transport's `Mcp-Method` and `Mcp-Name` headers count as well as the body.
/// - Other requests (`GET`, `DELETE`, and `POST` bodies of other media types, such as uploads on
///   routes next to the MCP endpoint) pass unread. The MCP transport sends JSON-RPC only as
///   `application/json`, and rmcp and axum's `Json` refuse anything else; a handler of your own
///   that parses JSON-RPC whatever the `Content-Type` must check the media type itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopePolicy {
    methods: BTreeMap<String, Vec<String>>,
    tools: BTreeMap<String, Vec<String>>,
    implied: BTreeMap<String, Vec<String>>,
    max_body_bytes: usize,
}

impl Default for ScopePolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ScopePolicy {
    /// The default for [`max_body_bytes`](ScopePolicy::max_body_bytes): 4 MiB, what rmcp's
    /// Streamable HTTP server accepts.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

    /// A policy with no rules: every valid token may call everything.
    pub fn new() -> Self {
        Self {
            methods: BTreeMap::new(),
            tools: BTreeMap::new(),
            implied: BTreeMap::new(),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Messages with this JSON-RPC `method` (matched exactly) need all of `scopes`. Repeating a
    /// method adds to its scopes.
    ///
    /// A rule for `initialize` or `tools/list` makes clients without that scope fail to connect at
    /// all (Claude treats a 403 there as a failed connection): put such scopes in
    /// [`default_scopes`](crate::OAuthConfig::default_scopes) instead.
    #[must_use]
    pub fn method<I, S>(mut self, method: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        add(self.methods.entry(method.into()).or_default(), scopes);
        self
    }

    /// `tools/call` messages for the tool `name` (their `params.name`, matched exactly) need all of
    /// `scopes`. Repeating a tool adds to its scopes.
    #[must_use]
    pub fn tool<I, S>(mut self, name: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        add(self.tools.entry(name.into()).or_default(), scopes);
        self
    }

    /// A token holding `scope` also satisfies each of `implied` (a scope hierarchy, e.g. `admin`
    /// implies `files:write`). Transitive. Challenges still name the scope a rule asks for.
    #[must_use]
    pub fn implies<I, S>(mut self, scope: impl Into<String>, implied: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        add(self.implied.entry(scope.into()).or_default(), implied);
        self
    }

    /// The largest JSON body read to find the methods; a larger one gets `413`. At least 1024.
    #[must_use]
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Whether the policy has no method or tool rule (then nothing is read).
    pub fn is_empty(&self) -> bool {
        self.methods.values().all(Vec::is_empty) && self.tools.values().all(Vec::is_empty)
    }

    /// The scopes one message needs: the rule for `method`, and for `tools/call` also the rule for
    /// the tool `tool`. Empty when nothing is listed.
    pub fn scopes_for(&self, method: &str, tool: Option<&str>) -> Vec<String> {
        let mut needed = Vec::new();
        self.collect(method, tool, &mut needed);
        needed
    }

    fn collect(&self, method: &str, tool: Option<&str>, needed: &mut Vec<String>) {
        let by_method = self.methods.get(method).into_iter().flatten();
        let by_tool = tool
            .filter(|_| method == TOOLS_CALL)
            .and_then(|tool| self.tools.get(tool))
            .into_iter()
            .flatten();
        for scope in by_method.chain(by_tool) {
            if !needed.contains(scope) {
                needed.push(scope.clone());
            }
        }
    }

    pub(crate) fn body_limit(&self) -> usize {
        self.max_body_bytes
    }

    /// Every scope the messages in a JSON-RPC body (one message or a batch) need, in the order the
    /// rules name them. `Err` says why the body cannot be read as JSON-RPC.
    pub(crate) fn needed_by_body(&self, body: &[u8]) -> Result<Vec<String>, String> {
        let Messages(messages) = serde_json::from_slice(body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                format!("the body is not a JSON-RPC message or batch: {e}")
            }
            _ => format!(
                "the body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        })?;
        let mut needed = Vec::new();
        for message in &messages {
            if let Some(method) = &message.method {
                self.collect(method, message.tool.as_deref(), &mut needed);
            }
        }
        Ok(needed)
    }

    /// Whether a token holding `held` satisfies `scope`, directly or through [`implies`](Self::implies).
    pub(crate) fn satisfied_by(&self, scope: &str, held: &[String]) -> bool {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut pending: Vec<&str> = held.iter().map(String::as_str).collect();
        while let Some(next) = pending.pop() {
            if next == scope {
                return true;
            }
            if seen.insert(next) {
                pending.extend(
                    self.implied
                        .get(next)
                        .into_iter()
                        .flatten()
                        .map(String::as_str),
                );
            }
        }
        false
    }

    /// Check the policy against the configured scopes: a rule naming a scope the server never
    /// grants could never be satisfied. `Err` is the reason.
    pub(crate) fn validate(&self, configured: &[String]) -> Result<(), String> {
        for (kind, rules) in [
            ("method", &self.methods),
            ("tool", &self.tools),
            ("implies", &self.implied),
        ] {
            for (name, scopes) in rules {
                if name.is_empty() {
                    return Err(format!("a {kind} rule has an empty name"));
                }
                let unknown = scopes
                    .iter()
                    .chain((kind == "implies").then_some(name))
                    .find(|scope| !configured.contains(scope));
                if let Some(scope) = unknown {
                    return Err(format!(
                        "{kind} {name:?} names scope {scope:?}, which is not in scopes"
                    ));
                }
            }
        }
        if self.max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".to_owned());
        }
        Ok(())
    }
}

fn add<I, S>(list: &mut Vec<String>, scopes: I)
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    for scope in scopes {
        let scope = scope.into();
        if !list.contains(&scope) {
            list.push(scope);
        }
    }
}

/// The messages of a body: one object, or a batch array of objects.
struct Messages(Vec<Message>);

/// A JSON-RPC message, as far as the policy cares: its method, and a tool call's tool name.
/// Duplicated keys that matter are refused rather than resolved, since parsers disagree on which
/// copy wins.
struct Message {
    method: Option<String>,
    tool: Option<String>,
}

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MessagesVisitor;
        impl<'de> Visitor<'de> for MessagesVisitor {
            type Value = Messages;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC message object or a batch array")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Messages, A::Error> {
                MessageVisitor.visit_map(map).map(|m| Messages(vec![m]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Messages, A::Error> {
                let mut messages = Vec::new();
                while let Some(message) = seq.next_element::<Message>()? {
                    messages.push(message);
                }
                Ok(Messages(messages))
            }
        }
        deserializer.deserialize_any(MessagesVisitor)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let mut method: Option<Option<String>> = None;
        let mut params: Option<Option<Params>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "method" if method.is_some() => return Err(de::Error::duplicate_field("method")),
                "method" => method = Some(map.next_value()?),
                "params" if params.is_some() => return Err(de::Error::duplicate_field("params")),
                "params" => params = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Message {
            method: method.flatten(),
            tool: params.flatten().and_then(|p| p.name),
        })
    }
}

/// `params`: an object (whose `name` is kept when it is a string) or an array (by-position
/// parameters, which name no tool). Anything else is not JSON-RPC.
struct Params {
    name: Option<String>,
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamsVisitor;
        impl<'de> Visitor<'de> for ParamsVisitor {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON-RPC params: an object or an array")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut name: Option<serde_json::Value> = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "name" {
                        if name.is_some() {
                            return Err(de::Error::duplicate_field("name"));
                        }
                        name = Some(map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Params {
                    name: name.and_then(|n| n.as_str().map(str::to_owned)),
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Params, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Params { name: None })
            }
        }
        deserializer.deserialize_any(ParamsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ScopePolicy {
        ScopePolicy::new()
            .method("resources/write", ["files:write"])
            .method("tools/call", ["mcp"])
            .tool("delete_repo", ["admin"])
            .tool("billing_report", ["billing", "admin"])
            .implies("admin", ["files:write"])
            .implies("owner", ["admin"])
    }

    fn needed(body: &str) -> Result<Vec<String>, String> {
        policy().needed_by_body(body.as_bytes())
    }

    #[test]
    fn single_messages_and_batches() {
        assert_eq!(
            needed(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo"}}"#
            ),
            Ok(vec!["mcp".to_owned(), "admin".to_owned()])
        );
        assert_eq!(
            needed(
                r#"[{"method":"resources/write"},{"method":"tools/call","params":{"name":"billing_report"}},{"method":"ping"}]"#
            ),
            Ok(vec![
                "files:write".to_owned(),
                "mcp".to_owned(),
                "billing".to_owned(),
                "admin".to_owned()
            ])
        );
        assert_eq!(needed(r#"{"method":"tools/list"}"#), Ok(vec![]));
        assert_eq!(needed(r#"{"id":1,"result":{}}"#), Ok(vec![]));
        assert_eq!(needed("[]"), Ok(vec![]));
        // A tool name on another method is no tool call.
        assert_eq!(
            needed(r#"{"method":"prompts/get","params":{"name":"delete_repo"}}"#),
            Ok(vec![])
        );
        // Escapes are decoded before matching.
        assert_eq!(
            needed(r#"{"method":"tools\/c\u0061ll","params":{"name":"delete\u005frepo"}}"#),
            Ok(vec!["mcp".to_owned(), "admin".to_owned()])
        );
        // By-position params name no tool; a non-string name names none either.
        assert_eq!(
            needed(r#"{"method":"tools/call","params":["delete_repo"]}"#),
            Ok(vec!["mcp".to_owned()])
        );
        assert_eq!(
            needed(r#"{"method":"tools/call","params":{"name":7}}"#),
            Ok(vec!["mcp".to_owned()])
        );
    }

    #[test]
    fn unreadable_bodies_are_refused() {
        for body in [
            "",
            "{",
            "{\"method\":\"tools/call\"} trailing",
            "\u{feff}{}",
            "42",
            "\"tools/call\"",
            "[1]",
            r#"{"method":5}"#,
            r#"{"method":"ping","method":"tools/call"}"#,
            r#"{"method":"tools/call","params":{"name":"a","name":"delete_repo"}}"#,
            r#"{"method":"tools/call","params":{},"params":{"name":"delete_repo"}}"#,
            r#"{"method":"tools/call","params":"delete_repo"}"#,
        ] {
            assert!(needed(body).is_err(), "{body:?}");
        }
        // Nesting is skipped without recursion, so depth costs no stack.
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(needed(&deep), Ok(vec![]));
        let deep_name = format!(
            "{{\"method\":\"tools/call\",\"params\":{{\"name\":{}{}}}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(needed(&deep_name).is_err());
    }

    #[test]
    fn hierarchy() {
        let policy = policy();
        let held = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(policy.satisfied_by("files:write", &held(&["admin"])));
        assert!(policy.satisfied_by("files:write", &held(&["owner"])));
        assert!(policy.satisfied_by("admin", &held(&["mcp", "admin"])));
        assert!(!policy.satisfied_by("admin", &held(&["mcp", "files:write"])));
        let cyclic = ScopePolicy::new().implies("a", ["b"]).implies("b", ["a"]);
        assert!(!cyclic.satisfied_by("c", &held(&["a"])));
    }

    #[test]
    fn validation_names_unknown_scopes() {
        let configured: Vec<String> = ["mcp", "admin", "billing", "files:write", "owner"]
            .map(String::from)
            .to_vec();
        assert_eq!(policy().validate(&configured), Ok(()));
        let err = ScopePolicy::new()
            .tool("x", ["root"])
            .validate(&configured)
            .unwrap_err();
        assert!(err.contains("\"root\""), "{err}");
        assert!(
            ScopePolicy::new()
                .implies("root", ["mcp"])
                .validate(&configured)
                .is_err()
        );
        assert!(
            ScopePolicy::new()
                .max_body_bytes(10)
                .validate(&configured)
                .is_err()
        );
        assert!(ScopePolicy::new().is_empty());
        assert!(
            ScopePolicy::new()
                .method("x", Vec::<String>::new())
                .is_empty()
        );
        assert!(!policy().is_empty());
    }
}
