//! The owner console page: signed out (a passkey sign-in button) or signed in (grants, clients,
//! passkeys, connection doctor). Everything shown is escaped by askama; times are rendered in UTC
//! and the script shows them in local time.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;

use super::{ASSETS, Assets, display_name, render};
use crate::console::{ClientInfo, ConnectionTrace, GrantInfo, PasskeyInfo, Registration};
use crate::rules::secret::Secret;
use crate::store::UnixTime;

/// What the signed-in console shows.
#[derive(Debug)]
pub(crate) struct ConsolePage<'a> {
    pub(crate) app_name: &'a str,
    pub(crate) csrf_token: &'a Secret,
    pub(crate) signed_in_with: &'a str,
    pub(crate) grants: &'a [GrantInfo],
    pub(crate) clients: &'a [ClientInfo],
    /// Which page of the client list to show, from 1.
    pub(crate) clients_page: usize,
    pub(crate) passkeys: &'a [PasskeyInfo],
    pub(crate) traces: &'a [ConnectionTrace],
}

/// Clients shown per page: a flood of registrations must not make the console unusable.
const CLIENTS_PER_PAGE: usize = 50;

#[derive(Template)]
#[template(path = "console.html", config = "src/pages/askama.toml")]
struct ConsoleView<'a> {
    assets: &'static Assets,
    app_name: &'a str,
    csrf_token: &'a str,
    signed_in_with: &'a str,
    grants: Vec<GrantRow<'a>>,
    clients: Vec<ClientRow<'a>>,
    clients_total: usize,
    never_approved: usize,
    removable: usize,
    page: usize,
    pages: usize,
    previous_page: Option<usize>,
    next_page: Option<usize>,
    passkeys: Vec<PasskeyRow<'a>>,
    can_remove_passkeys: bool,
    traces: Vec<TraceView>,
}

#[derive(Template)]
#[template(path = "console_login.html", config = "src/pages/askama.toml")]
struct LoginView<'a> {
    assets: &'static Assets,
    app_name: &'a str,
    has_passkeys: bool,
    register_path: &'static str,
}

struct GrantRow<'a> {
    grant_id: &'a str,
    client_name: String,
    client_id: &'a str,
    registration: String,
    redirect_origin: &'a str,
    scopes: String,
    approved_at: Time,
    last_used_at: Time,
    access_expires_at: Time,
    refresh_expires_at: Time,
}

struct ClientRow<'a> {
    client_id: &'a str,
    name: String,
    registration: String,
    registered_at: Time,
    redirect_uris: String,
    grants: usize,
    deletable: bool,
    never_approved: bool,
}

struct PasskeyRow<'a> {
    credential_id: &'a str,
    label: &'a str,
    created_at: Time,
    last_used_at: Time,
}

struct TraceView {
    who: String,
    caption: &'static str,
    diagnosis: Option<String>,
    failed: bool,
    last_at: Time,
    steps: Vec<StepView>,
}

struct StepView {
    at: Time,
    what: &'static str,
    detail: String,
    failed: bool,
    error: String,
}

/// A time for a `<time>` element: machine form and UTC text; empty when absent.
struct Time {
    iso: String,
    text: String,
}

impl Time {
    fn of(at: Option<UnixTime>) -> Self {
        match at {
            Some(at) => {
                let (date, clock) = utc(at);
                Self {
                    iso: format!("{date}T{clock}Z"),
                    text: format!("{date} {clock} UTC"),
                }
            }
            None => Self {
                iso: String::new(),
                text: "—".to_owned(),
            },
        }
    }
}

/// `YYYY-MM-DD` and `HH:MM:SS` in UTC (days to civil date: Howard Hinnant's public-domain method).
fn utc(at: UnixTime) -> (String, String) {
    let secs = at.0;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let of_day = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        ),
    )
}

fn client_label(name: Option<&str>) -> String {
    name.map(display_name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Unnamed client".to_owned())
}

/// `200` with the signed-in console.
pub(crate) fn console(page: &ConsolePage<'_>) -> Response {
    let pages = page.clients.len().div_ceil(CLIENTS_PER_PAGE).max(1);
    let current = page.clients_page.clamp(1, pages);
    let view = ConsoleView {
        assets: &ASSETS,
        app_name: page.app_name,
        csrf_token: page.csrf_token.expose(),
        signed_in_with: page.signed_in_with,
        grants: page
            .grants
            .iter()
            .map(|g| GrantRow {
                grant_id: &g.grant_id.0,
                client_name: client_label(g.client_name.as_deref()),
                client_id: &g.client_id,
                registration: g.registration.describe(),
                redirect_origin: g.redirect_origin.as_deref().unwrap_or("—"),
                scopes: g.scopes.join(" "),
                approved_at: Time::of(Some(g.approved_at)),
                last_used_at: Time::of(g.last_used_at),
                access_expires_at: Time::of(g.access_expires_at),
                refresh_expires_at: Time::of(g.refresh_expires_at),
            })
            .collect(),
        clients_total: page.clients.len(),
        never_approved: page.clients.iter().filter(|c| c.never_approved).count(),
        removable: page
            .clients
            .iter()
            .filter(|c| c.is_removable_as_unapproved())
            .count(),
        page: current,
        pages,
        previous_page: (current > 1).then(|| current - 1),
        next_page: (current < pages).then(|| current + 1),
        clients: page
            .clients
            .iter()
            .skip((current - 1) * CLIENTS_PER_PAGE)
            .take(CLIENTS_PER_PAGE)
            .map(|c| ClientRow {
                client_id: &c.client_id,
                name: client_label(c.name.as_deref()),
                registration: c.registration.describe(),
                registered_at: Time::of(match c.registration {
                    Registration::Dynamic { registered_at, .. } => Some(registered_at),
                    _ => None,
                }),
                redirect_uris: c.redirect_uris.join(" "),
                grants: c.grants,
                deletable: !matches!(
                    c.registration,
                    Registration::PreRegistered | Registration::Machine
                ),
                never_approved: c.never_approved,
            })
            .collect(),
        passkeys: page
            .passkeys
            .iter()
            .map(|p| PasskeyRow {
                credential_id: &p.credential_id,
                label: &p.label,
                created_at: Time::of(Some(p.created_at)),
                last_used_at: Time::of(p.last_used_at),
            })
            .collect(),
        can_remove_passkeys: page.passkeys.len() > 1,
        traces: page
            .traces
            .iter()
            .map(|trace| trace_view(trace, page.clients))
            .collect(),
    };
    render(StatusCode::OK, &view)
}

fn trace_view(trace: &ConnectionTrace, clients: &[ClientInfo]) -> TraceView {
    let name_of = |id: &str| {
        clients
            .iter()
            .find(|c| c.client_id == id)
            .and_then(|c| c.name.as_deref())
            .map(display_name)
    };
    let (who, caption) = match (&trace.client_id, &trace.user_agent) {
        (Some(id), _) => match name_of(id) {
            Some(name) => (format!("{name} ({id})"), "client"),
            None => (id.clone(), "client"),
        },
        (None, Some(agent)) => (agent.clone(), "before registration, by user agent"),
        (None, None) => ("unknown".to_owned(), "unknown"),
    };
    TraceView {
        who,
        caption,
        diagnosis: trace.diagnosis(),
        failed: trace.steps.last().is_some_and(|s| s.error.is_some()),
        last_at: Time::of(Some(trace.last_at)),
        steps: trace
            .steps
            .iter()
            .map(|step| StepView {
                at: Time::of(Some(step.at)),
                what: step.kind.describe(),
                detail: step.detail.clone().unwrap_or_default(),
                failed: step.error.is_some(),
                error: step
                    .error
                    .as_ref()
                    .map(|(code, description)| {
                        if description.is_empty() {
                            code.clone()
                        } else {
                            format!("{code}: {description}")
                        }
                    })
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

/// `200` with the sign-in view.
pub(crate) fn console_login(app_name: &str, has_passkeys: bool) -> Response {
    render(
        StatusCode::OK,
        &LoginView {
            assets: &ASSETS,
            app_name,
            has_passkeys,
            register_path: crate::paths::PASSKEY_REGISTER,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_civil() {
        assert_eq!(utc(UnixTime(0)), ("1970-01-01".into(), "00:00:00".into()));
        assert_eq!(
            utc(UnixTime(951_782_400)),
            ("2000-02-29".into(), "00:00:00".into())
        );
        assert_eq!(
            utc(UnixTime(1_795_725_045)),
            ("2026-11-26".into(), "20:30:45".into())
        );
    }
}
