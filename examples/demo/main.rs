//! A complete MCP server behind `mcp-oauth`: three small tools served by `rmcp` over Streamable
//! HTTP at `/mcp`, with every client approved by the owner's passkey.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! On start it prints the MCP URL, the passkey setup URL (while no passkey is registered) and the
//! pre-registered client's credentials. Environment variables:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PORT` | `8080` | port to listen on (on 127.0.0.1) |
//! | `SERVER_URL` | `http://localhost:{PORT}` | public URL: the issuer and the passkey origin |
//! | `PASSKEY_STORE_PATH` | `./data/passkeys.json` | the owner's passkeys |
//! | `OAUTH_CLIENT_ID` | `demo-client` | the pre-registered confidential client |
//! | `OAUTH_CLIENT_SECRET` | random, printed at start | its secret (at least 16 characters) |
//! | `RATE_LIMITS` | `on` | `off` switches every rate limit off (for load tests) |
//! | `RATE_LIMIT_AUTH`, `RATE_LIMIT_REGISTRATION`, `RATE_LIMIT_GENERAL` | library defaults | one tier as `PER_MINUTE/BURST`, e.g. `120/60` |
//! | `TRUSTED_PROXIES` | none | comma-separated addresses or networks of reverse proxies whose `X-Forwarded-For` is believed, e.g. `127.0.0.1,10.0.0.0/8`; set it behind a proxy, or every client shares the proxy's limits |
//! | `CIMD_ALLOW_LOOPBACK_HTTP_FOR_TESTING` | off | `1` fetches client metadata documents and their key sets (`jwks_uri`) from `http` loopback URLs, so a test harness on this machine can play ChatGPT or another metadata-document client; refused unless `SERVER_URL` is a localhost URL; never in production |
//! | `CIMD_ALLOWED_PORTS` | `443` | comma-separated ports a metadata document or key set may be fetched from (a harness on loopback names its own) |
//! | `OAUTH_MACHINE_CLIENT_ID` | none | a machine client, which gets tokens for itself with `grant_type=client_credentials`; needs at least one of the next three |
//! | `OAUTH_MACHINE_CLIENT_SECRET` | none | its secret (at least 16 characters), sent with `client_secret_basic` or `client_secret_post` |
//! | `OAUTH_MACHINE_CLIENT_JWKS` | none | its public keys as JSON text, a JWK set `{"keys": [...]}`: it may sign client assertions (`private_key_jwt`) |
//! | `OAUTH_MACHINE_CLIENT_JWKS_URI` | none | or the URL of its JWK set (not both), `https` on port 443 (see `CIMD_ALLOWED_PORTS`), or `http` on loopback under `CIMD_ALLOW_LOOPBACK_HTTP_FOR_TESTING=1` |
//! | `OAUTH_MACHINE_CLIENT_SCOPES` | `mcp` (every scope the demo grants) | space-separated scopes it may have |
//! | `METRICS` | off | `1` serves the library's metrics in Prometheus text format at `/metrics` (unauthenticated: expose it to your monitoring only) |
//! | `RUST_LOG` | `info` | log filter |

use std::error::Error;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use axum::Router;
use axum::routing::get;
use ipnet::IpNet;
use mcp_oauth::{MachineClient, McpOAuth, OAuthConfig, RateLimit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

mod tools;

type BoxError = Box<dyn Error + Send + Sync>;

const APP_NAME: &str = "mcp-oauth demo";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Display, with the causes, reads better than the Debug form `main` would print.
            eprintln!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|e| format!("PORT={port:?} is not a port number: {e}"))?,
        Err(_) => 8080,
    };
    let server_url = env_or("SERVER_URL", format!("http://localhost:{port}"));
    let client_id = env_or("OAUTH_CLIENT_ID", "demo-client".to_owned());
    let (client_secret, secret_generated) = match std::env::var("OAUTH_CLIENT_SECRET") {
        Ok(secret) => (secret, false),
        Err(_) => (random_secret(), true),
    };
    let passkey_store_path = PathBuf::from(env_or(
        "PASSKEY_STORE_PATH",
        "./data/passkeys.json".to_owned(),
    ));

    let mut config = OAuthConfig::with_defaults(
        server_url.clone(),
        client_id.clone(),
        client_secret.clone(),
        APP_NAME,
        passkey_store_path.clone(),
    );
    apply_rate_limit_env(&mut config)?;
    config.trusted_proxies = trusted_proxies_env()?;
    apply_metadata_document_env(&mut config)?;
    config.machine_clients = machine_client_env(&config.scopes)?.into_iter().collect();
    let machine = config.machine_clients.first().cloned();
    let oauth = McpOAuth::builder(config)
        .build()
        .map_err(name_the_machine_variable)?;

    // rmcp refuses requests whose Host header it does not know (DNS-rebinding protection). Allow the
    // loopback names for local use and the public host of SERVER_URL for use behind a proxy.
    let mut allowed_hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Some(host) = url::Url::parse(&server_url)?.host_str() {
        allowed_hosts.push(host.to_owned());
    }
    let mcp_config = tools::transport_config(allowed_hosts);
    let shutdown_sessions = mcp_config.cancellation_token.clone();
    let mcp_service = tools::mcp_service(mcp_config);
    let mut app: Router = oauth.router(Router::new().nest_service("/mcp", mcp_service));
    let metrics = metrics_env()?;
    let serves_metrics = metrics.is_some();
    if let Some(metrics) = metrics {
        app = app.route("/metrics", get(move || async move { metrics.render() }));
    }

    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;

    println!();
    println!("  {APP_NAME} is listening on http://{address}");
    println!();
    println!("  MCP URL (add it to your MCP client):");
    println!("      {}", oauth.resource());
    println!();
    match oauth.setup_url().await? {
        Some(url) => {
            println!(
                "  No passkey is registered yet. Open this URL in a browser and register one:"
            );
            println!("      {url}");
        }
        None => println!(
            "  A passkey is already registered (in {}); clients are approved with it.",
            passkey_store_path.display()
        ),
    }
    println!();
    println!("  Pre-registered confidential client (for clients with \"advanced settings\"):");
    println!("      client id:     {client_id}");
    if secret_generated {
        println!("      client secret: {client_secret}");
        println!("      (generated for this run; set OAUTH_CLIENT_SECRET to keep one)");
    } else {
        println!("      client secret: the value of OAUTH_CLIENT_SECRET");
    }
    println!(
        "  Clients with dynamic registration (Claude Code, Cursor, VS Code, ...) need only the MCP URL."
    );
    if let Some(machine) = &machine {
        println!();
        println!(
            "  Machine client (grant_type=client_credentials at {}/token):",
            oauth.issuer()
        );
        println!("      client id: {}", machine.client_id);
        println!("      scopes:    {}", machine.scopes.join(" "));
        let mut ways = Vec::new();
        if machine.secret.is_some() {
            ways.push("the value of OAUTH_MACHINE_CLIENT_SECRET");
        }
        if machine.jwks.is_some() || machine.jwks_uri.is_some() {
            ways.push("a client assertion (private_key_jwt) signed with its keys");
        }
        println!("      signs in with: {}", ways.join(", or "));
    }
    println!();
    println!("  Owner console (connected clients, passkeys, connection doctor):");
    println!("      {}/oauth/console", oauth.issuer());
    println!();
    if serves_metrics {
        println!("  Metrics (Prometheus text format):");
        println!("      {}/metrics", oauth.issuer());
        println!();
    }

    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down");
        // Ends the open MCP streams, which would otherwise keep the server waiting.
        shutdown_sessions.cancel();
    })
    .await?;
    Ok(())
}

fn env_or(name: &str, default: String) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or(default)
}

/// `RATE_LIMITS=off`, and `RATE_LIMIT_<TIER>=PER_MINUTE/BURST` for each tier.
/// `METRICS=1`: a Prometheus recorder for the library's metrics, rendered at `/metrics`.
fn metrics_env() -> Result<Option<PrometheusHandle>, BoxError> {
    match std::env::var("METRICS").as_deref() {
        Ok("1") => Ok(Some(PrometheusBuilder::new().install_recorder()?)),
        Ok("0") | Err(_) => Ok(None),
        Ok(other) => Err(format!("METRICS={other:?}: use 1 to serve /metrics, or 0").into()),
    }
}

fn apply_rate_limit_env(config: &mut OAuthConfig) -> Result<(), BoxError> {
    match std::env::var("RATE_LIMITS").as_deref() {
        Ok("off" | "false" | "0") => config.rate_limits.enabled = false,
        Ok("on" | "true" | "1" | "") | Err(_) => {}
        Ok(other) => return Err(format!("RATE_LIMITS={other:?}: expected on or off").into()),
    }
    for (name, tier) in [
        ("RATE_LIMIT_AUTH", &mut config.rate_limits.auth),
        (
            "RATE_LIMIT_REGISTRATION",
            &mut config.rate_limits.registration,
        ),
        ("RATE_LIMIT_GENERAL", &mut config.rate_limits.general),
    ] {
        if let Ok(value) = std::env::var(name) {
            *tier = parse_tier(&value).ok_or_else(|| {
                format!("{name}={value:?}: expected PER_MINUTE/BURST, e.g. 120/60")
            })?;
        }
    }
    Ok(())
}

/// `CIMD_ALLOW_LOOPBACK_HTTP_FOR_TESTING=1` and `CIMD_ALLOWED_PORTS=443,9000`, for test harnesses
/// that serve client metadata documents (and their key sets) on this machine. The library refuses
/// the first unless `SERVER_URL` is a localhost URL.
fn apply_metadata_document_env(config: &mut OAuthConfig) -> Result<(), BoxError> {
    match std::env::var("CIMD_ALLOW_LOOPBACK_HTTP_FOR_TESTING").as_deref() {
        Ok("1" | "on" | "true") => config.cimd_allow_loopback_http_for_testing = true,
        Ok("0" | "off" | "false" | "") | Err(_) => {}
        Ok(other) => {
            return Err(
                format!("CIMD_ALLOW_LOOPBACK_HTTP_FOR_TESTING={other:?}: expected 1 or 0").into(),
            );
        }
    }
    if let Ok(value) = std::env::var("CIMD_ALLOWED_PORTS") {
        config.cimd_allowed_ports = value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<u16>().map_err(|_| {
                    format!("CIMD_ALLOWED_PORTS={value:?}: {item:?} is not a port number").into()
                })
            })
            .collect::<Result<_, BoxError>>()?;
    }
    Ok(())
}

/// The variables that configure the machine client.
const MACHINE_VARIABLES: [&str; 5] = [
    "OAUTH_MACHINE_CLIENT_ID",
    "OAUTH_MACHINE_CLIENT_SECRET",
    "OAUTH_MACHINE_CLIENT_JWKS",
    "OAUTH_MACHINE_CLIENT_JWKS_URI",
    "OAUTH_MACHINE_CLIENT_SCOPES",
];

/// A machine client (`client_credentials`) from `OAUTH_MACHINE_CLIENT_ID` with its secret and/or
/// keys (inline, or at a URL), and the scopes it may have (default: all of `scopes`). What the
/// demo can check itself is refused here, naming the variable; the library checks the rest.
fn machine_client_env(scopes: &[String]) -> Result<Option<MachineClient>, BoxError> {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let Some(client_id) = var("OAUTH_MACHINE_CLIENT_ID") else {
        if let Some(set) = MACHINE_VARIABLES.iter().find(|name| var(name).is_some()) {
            return Err(format!("{set} is set, but OAUTH_MACHINE_CLIENT_ID is not").into());
        }
        return Ok(None);
    };
    let secret = var("OAUTH_MACHINE_CLIENT_SECRET");
    let jwks = var("OAUTH_MACHINE_CLIENT_JWKS");
    let jwks_uri = var("OAUTH_MACHINE_CLIENT_JWKS_URI");
    if let Some(text) = &jwks
        && let Err(error) = serde_json::from_str::<serde_json::Value>(text)
    {
        return Err(format!("OAUTH_MACHINE_CLIENT_JWKS is not JSON ({error}): expected a JWK set, {{\"keys\": [...]}}").into());
    }
    let scopes: Vec<String> = match var("OAUTH_MACHINE_CLIENT_SCOPES") {
        None => scopes.to_vec(),
        Some(value) => {
            let asked: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
            if let Some(unknown) = asked.iter().find(|scope| !scopes.contains(scope)) {
                return Err(format!(
                    "OAUTH_MACHINE_CLIENT_SCOPES={value:?}: {unknown:?} is not a scope this server grants ({})",
                    scopes.join(" ")
                )
                .into());
            }
            asked
        }
    };
    let mut machine = match (jwks, jwks_uri, &secret) {
        (Some(jwks), None, _) => MachineClient::with_jwks(client_id, jwks, scopes),
        (None, Some(uri), _) => MachineClient::with_jwks_uri(client_id, uri, scopes),
        (None, None, Some(secret)) => MachineClient::with_secret(client_id, secret, scopes),
        (Some(_), Some(_), _) => {
            return Err(
                "OAUTH_MACHINE_CLIENT_JWKS and OAUTH_MACHINE_CLIENT_JWKS_URI are both set: \
                        give the keys inline or at a URL, not both"
                    .into(),
            );
        }
        (None, None, None) => {
            return Err(
                "OAUTH_MACHINE_CLIENT_ID is set: also set OAUTH_MACHINE_CLIENT_SECRET, \
                        OAUTH_MACHINE_CLIENT_JWKS or OAUTH_MACHINE_CLIENT_JWKS_URI"
                    .into(),
            );
        }
    };
    machine.secret = secret;
    Ok(Some(machine))
}

/// A refusal of the machine client by the library, told with the variables that configured it.
fn name_the_machine_variable(error: mcp_oauth::Error) -> BoxError {
    let mcp_oauth::Error::InvalidConfig {
        field: "machine_clients",
        reason,
    } = &error
    else {
        return error.into();
    };
    // The reason names the machine client's field: `jwks_uri`, `jwks`, its secret or scope.
    let variable = if reason.contains("jwks_uri") {
        "OAUTH_MACHINE_CLIENT_JWKS_URI"
    } else if reason.contains("jwks") {
        "OAUTH_MACHINE_CLIENT_JWKS"
    } else if reason.contains("secret") {
        "OAUTH_MACHINE_CLIENT_SECRET"
    } else if reason.contains("scope") {
        "OAUTH_MACHINE_CLIENT_SCOPES"
    } else {
        "OAUTH_MACHINE_CLIENT_ID"
    };
    format!("{variable}: the machine client is refused: {reason}").into()
}

/// `TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8`: addresses (one host each) or networks.
fn trusted_proxies_env() -> Result<Vec<IpNet>, BoxError> {
    let Ok(value) = std::env::var("TRUSTED_PROXIES") else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!(
                        "TRUSTED_PROXIES={value:?}: {item:?} is not an IP address or network \
                         (expected e.g. 127.0.0.1 or 10.0.0.0/8, comma-separated)"
                    )
                    .into()
                })
        })
        .collect()
}

fn parse_tier(value: &str) -> Option<RateLimit> {
    let (per_minute, burst) = value.split_once('/')?;
    Some(RateLimit::new(
        per_minute.trim().parse().ok()?,
        burst.trim().parse().ok()?,
    ))
}

/// 192 random bits, hex: a client secret for this run.
fn random_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
