//! The connection doctor's memory: the recent steps of each client's connection attempts, and when
//! each grant was last used. Bounded, in this process only, and free of secrets: it records step
//! names, client ids, user agents and the error each failed step returned.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::clock::Clock;
use crate::store::{GrantId, UnixTime};

/// How many clients (or anonymous user agents) the doctor remembers; the least recently active
/// is forgotten first.
const MAX_SOURCES: usize = 200;
/// How many steps it keeps per client.
const MAX_STEPS: usize = 40;
/// How many grants' last use it remembers.
const MAX_GRANTS: usize = 10_000;
/// User agents are cut to this many characters.
const MAX_USER_AGENT_CHARS: usize = 120;

/// One step of connecting a client, in the order a client normally takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StepKind {
    /// An MCP request without a usable token got the `401` challenge.
    Challenge,
    /// The protected resource metadata (RFC 9728) was fetched.
    ResourceMetadata,
    /// The authorization server metadata (RFC 8414) was fetched.
    ServerMetadata,
    /// Dynamic client registration (RFC 7591).
    Registration,
    /// The client's metadata document (its `client_id` is a URL) could not be fetched or used;
    /// the error says exactly why, which the client itself is not told.
    MetadataDocument,
    /// The client's public keys (its `jwks_uri`) could not be fetched or used for a client
    /// assertion; the error says exactly why.
    KeySet,
    /// The authorization request: the consent page, or why it could not be shown.
    Authorize,
    /// The owner approved with a passkey.
    Approval,
    /// The owner denied.
    Denial,
    /// The authorization code was exchanged for tokens.
    CodeExchange,
    /// The first MCP request with a token of a grant.
    FirstMcpCall,
    /// A refresh token was exchanged.
    Refresh,
    /// A machine client got a token for itself (`client_credentials`).
    MachineToken,
    /// A token was revoked, or a grant revoked for a replay.
    Revocation,
    /// An MCP request lacked a scope it needed (`403 insufficient_scope`).
    InsufficientScope,
}

impl StepKind {
    /// A short stable name, e.g. `code_exchange`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Challenge => "challenge",
            Self::ResourceMetadata => "resource_metadata",
            Self::ServerMetadata => "server_metadata",
            Self::Registration => "registration",
            Self::MetadataDocument => "metadata_document",
            Self::KeySet => "key_set",
            Self::Authorize => "authorize",
            Self::Approval => "approval",
            Self::Denial => "denial",
            Self::CodeExchange => "code_exchange",
            Self::FirstMcpCall => "first_mcp_call",
            Self::Refresh => "refresh",
            Self::MachineToken => "machine_token",
            Self::Revocation => "revocation",
            Self::InsufficientScope => "insufficient_scope",
        }
    }

    /// What the step is, in words for the console.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Challenge => "MCP request without a valid token: 401 challenge",
            Self::ResourceMetadata => "Fetched the protected resource metadata",
            Self::ServerMetadata => "Fetched the authorization server metadata",
            Self::Registration => "Registered itself (dynamic client registration)",
            Self::MetadataDocument => "Fetching its client metadata document failed",
            Self::KeySet => "Fetching its public keys (jwks_uri) failed",
            Self::Authorize => "Opened the consent page",
            Self::Approval => "Approved by the owner",
            Self::Denial => "Denied by the owner",
            Self::CodeExchange => "Exchanged the authorization code for tokens",
            Self::FirstMcpCall => "First MCP request with its token",
            Self::Refresh => "Refreshed its tokens",
            Self::MachineToken => "Got a token for itself as a machine client (client_credentials)",
            Self::Revocation => "Revocation",
            Self::InsufficientScope => "MCP request needed more scopes: 403",
        }
    }
}

/// One recorded step.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStep {
    /// When it happened.
    pub at: UnixTime,
    /// Which step.
    pub kind: StepKind,
    /// `None` when the step succeeded; else the OAuth error code and description it returned.
    pub error: Option<(String, String)>,
    /// A detail such as the user agent or the path requested.
    pub detail: Option<String>,
}

/// The recent steps of one client, oldest first. Steps taken before the client had an id (the
/// challenge, metadata fetches, a failed registration) are grouped by user agent instead.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionTrace {
    /// The client, when the steps are known to be its.
    pub client_id: Option<String>,
    /// The user agent, for steps grouped by it.
    pub user_agent: Option<String>,
    /// Oldest first.
    pub steps: Vec<ConnectionStep>,
    /// When the last step happened.
    pub last_at: UnixTime,
}

impl ConnectionTrace {
    /// What the steps suggest, in plain words, when the attempt looks stuck or failed; `None`
    /// when the last step is a healthy one.
    pub fn diagnosis(&self) -> Option<String> {
        let last = self.steps.last()?;
        let took = |kind: StepKind| self.steps.iter().any(|s| s.kind == kind);
        if let Some((code, description)) = &last.error {
            if let Some(cause) = self.document_failure() {
                return Some(format!(
                    "Stopped at “{}”: {code}, because {cause}.",
                    last.kind.describe()
                ));
            }
            let why = match (last.kind, code.as_str()) {
                (StepKind::Refresh, "invalid_grant") => {
                    " The refresh token is no longer valid: the client has to connect again."
                }
                (StepKind::CodeExchange, "invalid_grant") => {
                    " A code is single use, expires within minutes, and must come with the verifier and redirect URI of its request."
                }
                (_, "invalid_client") => {
                    " The client is unknown here (its registration may have lapsed or been deleted): it has to register again."
                }
                (_, "invalid_target") => " The `resource` it named is not this server's MCP URL.",
                (StepKind::Challenge, "invalid_token") => {
                    " Its token is expired, revoked or for another server: it should refresh or connect again."
                }
                _ => "",
            };
            let description = if description.is_empty() {
                String::new()
            } else {
                format!(" ({description})")
            };
            return Some(format!(
                "Stopped at “{}”: {code}{description}.{why}",
                last.kind.describe()
            ));
        }
        let verdict = match last.kind {
            StepKind::Challenge if !took(StepKind::ResourceMetadata) => {
                "It got the 401 challenge but has not fetched the protected resource metadata: it may not support OAuth discovery, or a proxy strips the WWW-Authenticate header."
            }
            StepKind::ResourceMetadata => {
                "It read the protected resource metadata but has not fetched the authorization server metadata."
            }
            StepKind::ServerMetadata => {
                "It read both metadata documents but has not registered or opened the consent page."
            }
            StepKind::Registration => "It registered but has not opened the consent page.",
            StepKind::Authorize => {
                "The consent page was opened but not answered: approve or deny it in the browser."
            }
            StepKind::Approval => {
                "Approved, but the code has not been exchanged: the client may not have received the redirect, or its token request does not reach this server."
            }
            StepKind::CodeExchange => {
                "Tokens were issued but no MCP request with them has arrived: check any proxy, firewall or bot protection between the client and this server."
            }
            _ => return None,
        };
        Some(verdict.to_owned())
    }

    /// The failed fetch (metadata document or key set) behind the last step: that step itself, or
    /// the one just before (the endpoint's own refusal is recorded after it).
    fn document_failure(&self) -> Option<&str> {
        self.steps
            .iter()
            .rev()
            .take(2)
            .find(|step| matches!(step.kind, StepKind::MetadataDocument | StepKind::KeySet))
            .and_then(|step| step.error.as_ref())
            .map(|(_, detail)| detail.as_str())
    }
}

/// Who took a step.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Client(String),
    UserAgent(String),
}

impl Source {
    /// The client if known, else the user agent (cut), else "unknown".
    pub(crate) fn of(client_id: Option<&str>, user_agent: Option<&str>) -> Self {
        match client_id {
            Some(id) if !id.is_empty() => Self::Client(cut(id, 200)),
            _ => Self::UserAgent(cut(
                user_agent.unwrap_or("unknown user agent"),
                MAX_USER_AGENT_CHARS,
            )),
        }
    }
}

fn cut(text: &str, max: usize) -> String {
    // Client ids and most user agents are short printable ASCII: copy them whole.
    if text.len() <= max && text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return text.to_owned();
    }
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[derive(Debug, Default)]
struct Traces {
    by_source: HashMap<Source, (UnixTime, VecDeque<ConnectionStep>)>,
}

/// The doctor's bounded memory, shared by every handler.
#[derive(Debug, Default)]
pub(crate) struct ConnectionDoctor {
    /// Where step and last-use times come from.
    clock: Clock,
    traces: Mutex<Traces>,
    /// Unix seconds per grant. Read-locked on the hot path: the guard updates an entry in place,
    /// so concurrent requests with the same token do not queue on a lock.
    last_use: RwLock<HashMap<GrantId, AtomicU64>>,
}

// A panic while holding a lock leaves plain data behind; keep going with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl ConnectionDoctor {
    pub(crate) fn new(clock: Clock) -> Self {
        Self {
            clock,
            ..Self::default()
        }
    }

    /// Record a step.
    pub(crate) fn record(
        &self,
        source: Source,
        kind: StepKind,
        error: Option<(&str, &str)>,
        detail: Option<&str>,
    ) {
        let now = self.clock.now();
        let step = ConnectionStep {
            at: now,
            kind,
            error: error.map(|(code, description)| (cut(code, 64), cut(description, 300))),
            detail: detail.map(|d| cut(d, MAX_USER_AGENT_CHARS)),
        };
        let mut traces = lock(&self.traces);
        if !traces.by_source.contains_key(&source) && traces.by_source.len() >= MAX_SOURCES {
            let oldest = traces
                .by_source
                .iter()
                .min_by_key(|(_, (last, _))| *last)
                .map(|(source, _)| source.clone());
            if let Some(oldest) = oldest {
                traces.by_source.remove(&oldest);
            }
        }
        let (last, steps) = traces
            .by_source
            .entry(source)
            .or_insert_with(|| (now, VecDeque::new()));
        *last = now;
        if steps.len() == MAX_STEPS {
            steps.pop_front();
        }
        steps.push_back(step);
    }

    /// Note a use of a grant's token. Returns `true` for the first use this process has seen.
    /// The hot path: a read lock, one lookup and an atomic store; the write lock only for a grant
    /// not seen before.
    pub(crate) fn grant_used(&self, grant_id: &GrantId) -> bool {
        let now = self.clock.now().0;
        if let Some(at) = read(&self.last_use).get(grant_id) {
            at.store(now, Ordering::Relaxed);
            return false;
        }
        let mut last_use = write(&self.last_use);
        if let Some(at) = last_use.get(grant_id) {
            // Another request got here first.
            at.store(now, Ordering::Relaxed);
            return false;
        }
        if last_use.len() >= MAX_GRANTS {
            let oldest = last_use
                .iter()
                .min_by_key(|(_, at)| at.load(Ordering::Relaxed))
                .map(|(grant, _)| grant.clone());
            if let Some(oldest) = oldest {
                last_use.remove(&oldest);
            }
        }
        last_use.insert(grant_id.clone(), AtomicU64::new(now));
        true
    }

    /// When a grant's token was last used, as seen by this process.
    pub(crate) fn last_used(&self, grant_id: &GrantId) -> Option<UnixTime> {
        read(&self.last_use)
            .get(grant_id)
            .map(|at| UnixTime(at.load(Ordering::Relaxed)))
    }

    /// Every trace, the most recently active first.
    pub(crate) fn traces(&self) -> Vec<ConnectionTrace> {
        let traces = lock(&self.traces);
        let mut out: Vec<ConnectionTrace> = traces
            .by_source
            .iter()
            .map(|(source, (last, steps))| {
                let (client_id, user_agent) = match source {
                    Source::Client(id) => (Some(id.clone()), None),
                    Source::UserAgent(agent) => (None, Some(agent.clone())),
                };
                ConnectionTrace {
                    client_id,
                    user_agent,
                    steps: steps.iter().cloned().collect(),
                    last_at: *last,
                }
            })
            .collect();
        out.sort_by_key(|trace| std::cmp::Reverse(trace.last_at));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_kept_in_order_and_bounded_per_source() {
        let doctor = ConnectionDoctor::default();
        let source = Source::of(Some("client-1"), None);
        for _ in 0..MAX_STEPS + 5 {
            doctor.record(source.clone(), StepKind::Refresh, None, None);
        }
        doctor.record(
            source,
            StepKind::CodeExchange,
            Some(("invalid_grant", "the code expired")),
            None,
        );
        let traces = doctor.traces();
        assert_eq!(traces.len(), 1);
        assert_eq!(traces[0].steps.len(), MAX_STEPS);
        let last = traces[0].steps.last().unwrap();
        assert_eq!(last.kind, StepKind::CodeExchange);
        assert_eq!(last.error.as_ref().unwrap().0, "invalid_grant");
    }

    #[test]
    fn steps_and_uses_are_timed_by_the_servers_clock() {
        let clock = crate::ManualClock::new();
        // Well ahead of the system clock, so a time taken from it would show.
        clock.advance(std::time::Duration::from_secs(3_600));
        let doctor = ConnectionDoctor::new(Clock::Manual(clock.clone()));
        doctor.record(
            Source::of(Some("client-1"), None),
            StepKind::Refresh,
            None,
            None,
        );
        let grant = GrantId::generate();
        doctor.grant_used(&grant);
        let traces = doctor.traces();
        assert_eq!(traces[0].steps[0].at, clock.now());
        assert_eq!(traces[0].last_at, clock.now());
        assert_eq!(doctor.last_used(&grant), Some(clock.now()));
    }

    #[test]
    fn sources_are_bounded() {
        let doctor = ConnectionDoctor::default();
        for i in 0..MAX_SOURCES + 50 {
            let agent = format!("agent {i}");
            doctor.record(
                Source::of(None, Some(&agent)),
                StepKind::Challenge,
                None,
                None,
            );
        }
        assert_eq!(doctor.traces().len(), MAX_SOURCES);
    }

    #[test]
    fn user_agents_are_cut_and_stripped_of_control_characters() {
        let agent = format!("evil\r\nagent{}", "x".repeat(500));
        let Source::UserAgent(kept) = Source::of(None, Some(&agent)) else {
            panic!("no client id means a user-agent source");
        };
        assert!(kept.starts_with("evilagent"));
        assert_eq!(kept.chars().count(), MAX_USER_AGENT_CHARS);
    }

    fn trace(steps: &[(StepKind, Option<(&str, &str)>)]) -> ConnectionTrace {
        ConnectionTrace {
            client_id: Some("c".into()),
            user_agent: None,
            steps: steps
                .iter()
                .map(|(kind, error)| ConnectionStep {
                    at: UnixTime(1),
                    kind: *kind,
                    error: error.map(|(c, d)| (c.to_owned(), d.to_owned())),
                    detail: None,
                })
                .collect(),
            last_at: UnixTime(1),
        }
    }

    #[test]
    fn the_diagnosis_names_where_an_attempt_stopped() {
        let silent = trace(&[(StepKind::Approval, None), (StepKind::CodeExchange, None)]);
        assert!(silent.diagnosis().unwrap().contains("no MCP request"));
        let healthy = trace(&[
            (StepKind::CodeExchange, None),
            (StepKind::FirstMcpCall, None),
        ]);
        assert_eq!(healthy.diagnosis(), None);
        let failed = trace(&[(StepKind::Refresh, Some(("invalid_grant", "gone")))]);
        let text = failed.diagnosis().unwrap();
        assert!(text.contains("invalid_grant (gone)") && text.contains("connect again"));
        let document = trace(&[
            (
                StepKind::MetadataDocument,
                Some((
                    "invalid_client",
                    "its metadata document could not be fetched: it answered HTTP 404 Not Found",
                )),
            ),
            (
                StepKind::Authorize,
                Some((
                    "invalid_request",
                    "the client's metadata document could not be fetched or is invalid",
                )),
            ),
        ]);
        let text = document.diagnosis().unwrap();
        assert!(
            text.contains(
                "because its metadata document could not be fetched: it answered HTTP 404"
            ),
            "{text}"
        );
        let no_discovery = trace(&[(StepKind::Challenge, None)]);
        assert!(
            no_discovery
                .diagnosis()
                .unwrap()
                .contains("WWW-Authenticate")
        );
    }

    #[test]
    fn first_use_of_a_grant_is_reported_once() {
        let doctor = ConnectionDoctor::default();
        let grant = GrantId("g".into());
        assert!(doctor.grant_used(&grant));
        assert!(!doctor.grant_used(&grant));
        assert!(doctor.last_used(&grant).is_some());
    }
}
