//! Client ID Metadata Documents (feature `cimd`): a client whose id is an `https` URL is described
//! by the JSON document at that URL. This module fetches the document without exposing the
//! server's network ([`ssrf`], [`fetch`]), validates it ([`document`]), and keeps it for a while
//! ([`cache`]); the same fetcher brings the key sets at clients' `jwks_uri` ([`jwks`]). The
//! protocol rules see only the [`MetadataDocuments`] and [`KeySets`] traits.

mod cache;
mod document;
mod fetch;
mod jwks;
mod slots;
mod ssrf;

use std::time::Instant;

use async_trait::async_trait;

use crate::oauth::assertion::{KeySet, KeySetError, KeySets};
use crate::oauth::client_metadata::{DocumentError, DocumentProblem, MetadataDocuments};
use crate::oauth::clients::Client;
use cache::{Cached, DocumentCache};
pub(crate) use ssrf::{UrlRules, check_url};

/// The resolver behind URL client ids.
#[derive(Debug)]
pub(crate) struct Documents {
    fetcher: fetch::Fetcher,
    cache: DocumentCache,
    key_sets: jwks::KeySetCache,
    native_redirect_uris: Vec<String>,
    rules: UrlRules,
}

impl Documents {
    /// # Errors
    ///
    /// The TLS configuration could not be built.
    pub(crate) fn new(native_redirect_uris: Vec<String>, rules: UrlRules) -> Result<Self, String> {
        Ok(Self {
            fetcher: fetch::Fetcher::new()?,
            cache: DocumentCache::new(),
            key_sets: jwks::KeySetCache::new(),
            native_redirect_uris,
            rules,
        })
    }

    async fn fetch_and_validate(
        &self,
        client_id: &str,
        target: &ssrf::Target,
        error: impl Fn(DocumentProblem) -> DocumentError,
    ) -> Result<(Client, fetch::Freshness), DocumentError> {
        let fetched = self.fetcher.fetch(target).await.map_err(|failure| {
            error(match failure {
                fetch::FetchError::Unavailable(why) => DocumentProblem::Unavailable(why),
                fetch::FetchError::BadAnswer(reason) => DocumentProblem::BadAnswer(reason),
            })
        })?;
        let client = document::validate(
            client_id,
            target.display_host(),
            &fetched.body,
            &self.native_redirect_uris,
            &self.rules,
        )
        .map_err(|reason| error(DocumentProblem::Invalid(reason)))?;
        Ok((client, fetched.freshness))
    }
}

#[async_trait]
impl MetadataDocuments for Documents {
    async fn client(&self, client_id: &str) -> Result<Client, DocumentError> {
        let target = ssrf::check_url(client_id, &self.rules).map_err(|reason| DocumentError {
            url: crate::oauth::params::printable(client_id),
            problem: DocumentProblem::Refused(reason),
        })?;
        let error = |problem| DocumentError {
            url: target.url.as_str().to_owned(),
            problem,
        };
        let stale = match self.cache.get(client_id, Instant::now()).await {
            Some(Cached::Fresh(client)) => return Ok(client),
            Some(Cached::Stale(client)) => Some(client),
            None => None,
        };
        match self.fetch_and_validate(client_id, &target, error).await {
            Ok((client, freshness)) => {
                match cache::time_to_live(freshness) {
                    Some(ttl) => {
                        self.cache
                            .insert(client_id, client.clone(), ttl, Instant::now())
                            .await;
                    }
                    None => self.cache.remove(client_id).await,
                }
                Ok(client)
            }
            // The detail goes to the log (and, through the caller, to the owner's connection
            // doctor); the client and the public page get a category only.
            Err(error) => match stale {
                Some(client) => {
                    tracing::warn!(target: "mcp_oauth::cimd", url = %error.url, detail = %error.detail(), "using the last good copy of a client metadata document");
                    Ok(client)
                }
                None if error.is_temporary() => {
                    tracing::warn!(target: "mcp_oauth::cimd", url = %error.url, detail = %error.detail(), "client metadata document unavailable for now");
                    Err(error)
                }
                None => {
                    tracing::warn!(target: "mcp_oauth::cimd", url = %error.url, detail = %error.detail(), "client metadata document refused");
                    Err(error)
                }
            },
        }
    }

    async fn approved(&self, client_id: &str) {
        self.cache.approve(client_id).await;
    }

    async fn removed(&self, client_id: &str) {
        self.cache.forget_approval(client_id).await;
    }
}

#[async_trait]
impl KeySets for Documents {
    async fn key_set(
        &self,
        client_id: &str,
        jwks_uri: &str,
        unknown_kid: Option<&str>,
    ) -> Result<KeySet, KeySetError> {
        self.key_sets
            .key_set(&self.fetcher, &self.rules, client_id, jwks_uri, unknown_kid)
            .await
    }

    async fn shares_refetch(&self, client_id: &str, jwks_uri: &str, kid: &str) -> bool {
        self.key_sets.shares_refetch(client_id, jwks_uri, kid).await
    }

    fn check_uri(&self, jwks_uri: &str) -> Result<(), String> {
        ssrf::check_url(jwks_uri, &self.rules).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use axum::routing::get;

    use super::*;

    /// A local server answering `/gone` with 404 and `/doc` with a valid document.
    async fn serve() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let id = format!("{base}/doc");
        let app = axum::Router::new()
            .route("/gone", get(|| async { StatusCode::NOT_FOUND }))
            .route(
                "/doc",
                get(move || async move {
                    axum::Json(serde_json::json!({
                        "client_id": id,
                        "client_name": "Fresh",
                        "redirect_uris": ["http://127.0.0.1/callback"],
                    }))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    fn old_copy(client_id: &str) -> Client {
        Client {
            client_id: client_id.to_owned(),
            secret_hash: None,
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            name: Some("Old copy".into()),
            pre_registered: false,
            may_refresh: false,
            may_use_code: true,
            metadata_host: Some("127.0.0.1".into()),
            assertion: None,
            machine_scopes: None,
        }
    }

    #[tokio::test]
    async fn a_failed_refetch_serves_the_stale_copy_and_a_good_one_replaces_it() {
        let base = serve().await;
        let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
        let rules = UrlRules {
            allowed_ports: vec![port],
            own_host: "localhost".into(),
            allow_loopback_http: true,
        };
        let documents = Documents::new(Vec::new(), rules).unwrap();
        let now = Instant::now();

        let gone = format!("{base}/gone");
        assert!(
            documents.client(&gone).await.is_err(),
            "nothing to fall back on"
        );
        documents
            .cache
            .insert(&gone, old_copy(&gone), Duration::ZERO, now)
            .await;
        let client = documents.client(&gone).await.unwrap();
        assert_eq!(client.name.as_deref(), Some("Old copy"));

        let doc = format!("{base}/doc");
        documents
            .cache
            .insert(&doc, old_copy(&doc), Duration::ZERO, now)
            .await;
        let client = documents.client(&doc).await.unwrap();
        assert_eq!(client.name.as_deref(), Some("Fresh"));
        assert!(matches!(
            documents.cache.get(&doc, Instant::now()).await,
            Some(Cached::Fresh(_))
        ));
    }
}
