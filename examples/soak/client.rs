//! The HTTP client side: requests over TCP to the server, every answer counted.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN};
use serde_json::Value;

use crate::tally::Tally;

/// An answer, read whole. Status 0 means the request itself failed (connection, I/O).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub(crate) struct Client {
    http: reqwest::Client,
    /// Where the server listens: `http://127.0.0.1:{port}`.
    base: String,
    /// The server's public URL (`http://localhost:{port}`), which pages send as their `Origin`.
    pub(crate) origin: String,
}

impl Client {
    pub(crate) fn new(port: u16) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
            origin: format!("http://localhost:{port}"),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, tally: &Tally) -> Answer {
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(body) => Answer {
                        status,
                        body: body.to_vec(),
                    },
                    Err(_) => Answer {
                        status: 0,
                        body: Vec::new(),
                    },
                }
            }
            Err(error) => Answer {
                status: 0,
                body: error.to_string().into_bytes(),
            },
        };
        tally.request(answer.status);
        answer
    }

    pub(crate) async fn get(&self, path: &str, tally: &Tally) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base)), tally)
            .await
    }

    /// A JSON call from the server's own pages (same origin).
    pub(crate) async fn post_json(&self, path: &str, body: &Value, tally: &Tally) -> Answer {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/json")
            .header(ORIGIN, &self.origin)
            .body(body.to_string());
        self.send(request, tally).await
    }

    pub(crate) async fn post_form(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        tally: &Tally,
    ) -> Answer {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(pairs);
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.finish());
        self.send(request, tally).await
    }

    /// A JSON-RPC call to the MCP route with a bearer token.
    pub(crate) async fn mcp(&self, token: &str, tally: &Tally) -> Answer {
        let request = self
            .http
            .post(format!("{}/mcp", self.base))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(CONTENT_TYPE, "application/json")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        self.send(request, tally).await
    }
}
