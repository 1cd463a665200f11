//! The token endpoint: the `authorization_code` grant, and minting tokens for every grant (the
//! `refresh_token` grant is in [`refresh`](super::refresh), `client_credentials` in
//! [`machine`](super::machine)).

use serde::Serialize;

use super::budget::{Budget, Refused};
use super::clients::Client;
use super::grants::Minted;
use super::params::Params;
use super::payload::{self, CodeGrant, MachineTokenGrant, SuccessorPair, TokenGrant};
use super::{AuthServer, ErrorCode, OAuthError, pkce, scope};
use crate::audit::AuditEvent;
use crate::rules::secret::{self, Secret};
use crate::store::{Consumed, GrantId, TokenHash, TokenKind, TokenRecord};

/// A successful token response (OAuth 2.1 §3.2.3).
#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    access_token: Secret,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<Secret>,
    scope: String,
}

impl TokenResponse {
    pub(super) fn bearer(
        access_token: String,
        expires_in: u64,
        refresh_token: Option<String>,
        scopes: &[String],
    ) -> Self {
        Self {
            access_token: access_token.into(),
            token_type: "Bearer",
            expires_in,
            refresh_token: refresh_token.map(Secret::from),
            scope: scope::join(scopes),
        }
    }
}

/// What tokens are minted for. (No `Debug`: a rotation holds the presented secret.)
#[derive(Clone, Copy)]
pub(super) enum Minting<'a> {
    /// Redeeming a code: with a refresh token when the client may refresh.
    Code { with_refresh: bool },
    /// Rotating the refresh token `presented`: the new pair is kept, sealed, for its retries.
    Rotation { presented: &'a str },
    /// A machine client's `client_credentials`: an access token alone (RFC 6749 §4.4.3), bound
    /// to the fingerprint of the machine's configured credentials and to the place it holds.
    Machine {
        credentials: &'a [u8; 32],
        place: u32,
    },
}

impl AuthServer {
    /// Handle a token request. `authorization` is the raw `Authorization` header; client
    /// authentication spends the caller's `budget`.
    pub(crate) async fn token(
        &self,
        body: &[u8],
        authorization: Option<&str>,
        budget: &Budget,
    ) -> Result<TokenResponse, Refused> {
        let params = Params::parse(body)?;
        let grant_type = params.require("grant_type")?;
        let machines = !self.settings.machine_clients.is_empty();
        let supported = match grant_type {
            "authorization_code" | "refresh_token" => true,
            "client_credentials" => machines,
            _ => false,
        };
        if !supported {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                if machines {
                    "grant_type must be authorization_code, refresh_token or client_credentials"
                } else {
                    "grant_type must be authorization_code or refresh_token"
                },
            )
            .into());
        }
        let client = self
            .authenticate_client(authorization, &params, budget)
            .await?;
        if grant_type == "client_credentials" {
            return Ok(self.client_credentials(&client, &params).await?);
        }
        if client.machine_scopes.is_some() {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "a machine client gets its tokens with client_credentials only",
            )
            .into());
        }
        let tokens = if grant_type == "authorization_code" {
            self.exchange_code(&client, &params).await?
        } else {
            self.refresh(&client, &params).await?
        };
        Ok(tokens)
    }

    async fn exchange_code(
        &self,
        client: &Client,
        params: &Params<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let code = params.require("code")?;
        let verifier = params.require("code_verifier")?;
        if !pkce::is_valid_verifier(verifier) {
            return Err(OAuthError::invalid_request(
                "code_verifier must be 43-128 unreserved characters",
            ));
        }
        self.settings.resource.check(params.get("resource"))?;
        let hash = TokenHash::of(code);
        let check = |grant: &CodeGrant| -> Result<(), OAuthError> {
            if grant.client_id != client.client_id {
                return Err(OAuthError::invalid_grant(
                    "the code was issued to another client",
                ));
            }
            if grant.resource != self.settings.resource.as_str() {
                return Err(OAuthError::invalid_grant(
                    "the code was issued for another resource",
                ));
            }
            if params
                .get("redirect_uri")
                .is_some_and(|uri| uri != grant.redirect_uri)
            {
                return Err(OAuthError::invalid_grant(
                    "redirect_uri differs from the authorization request",
                ));
            }
            if !pkce::verify(verifier, &grant.code_challenge) {
                return Err(OAuthError::invalid_grant(
                    "code_verifier does not match the challenge",
                ));
            }
            Ok(())
        };

        // Check before using the code up, so a stolen code without its verifier cannot burn it.
        if let Some(record) = self.tokens.get(TokenKind::AuthorizationCode, &hash).await? {
            check(&payload::decode(&record)?)?;
        }
        match self
            .tokens
            .consume(TokenKind::AuthorizationCode, &hash, self.now())
            .await?
        {
            Some(Consumed::First(record)) => {
                let grant: CodeGrant = payload::decode(&record)?;
                check(&grant)?;
                let token_grant = TokenGrant {
                    client_id: grant.client_id,
                    scopes: grant.scopes,
                    resource: grant.resource,
                };
                self.audit.emit(AuditEvent::CodeRedeemed {
                    client_id: client.client_id.clone(),
                    grant_id: record.grant_id.clone(),
                });
                self.issue(
                    &record.grant_id,
                    &token_grant,
                    &token_grant.scopes,
                    Minting::Code {
                        with_refresh: client.may_refresh,
                    },
                )
                .await
            }
            Some(Consumed::Replayed { record, .. }) => {
                // RFC 6749 §4.1.2 / OAuth 2.1 §4.1.3: a replayed code revokes what it produced, but
                // only when the replay is otherwise valid, or anyone could revoke anyone's grant.
                if check(&payload::decode(&record)?).is_ok() {
                    self.revoke_grant(&record.grant_id).await?;
                    self.audit.emit(AuditEvent::CodeReplayed {
                        client_id: client.client_id.clone(),
                        grant_id: record.grant_id.clone(),
                    });
                }
                Err(OAuthError::invalid_grant(
                    "the authorization code was already used; tokens issued from it are revoked",
                ))
            }
            None => Err(OAuthError::invalid_grant(
                "the authorization code is invalid or expired",
            )),
        }
    }

    /// Mint an access token (and a refresh token, when the client may refresh) within a grant.
    /// A rotation's pair is kept before the revocation check, which takes it back with the tokens;
    /// if another request kept a pair for the same refresh token first, the answer is that pair.
    pub(super) async fn issue(
        &self,
        grant_id: &GrantId,
        grant: &TokenGrant,
        access_scopes: &[String],
        minting: Minting<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now();
        let mut minted = Minted::default();
        let access_token = secret::generate(secret::prefix::ACCESS_TOKEN);
        // The refresh token keeps the grant's full scope even when this access token was narrowed
        // (OAuth 2.1 §4.3.3); usually they are the same, and so is the payload.
        let grant_payload = match minting {
            Minting::Machine { credentials, place } => payload::encode(&MachineTokenGrant {
                grant,
                credentials,
                place,
            }),
            _ => payload::encode(grant),
        };
        let access_payload = if access_scopes == grant.scopes {
            grant_payload.clone()
        } else {
            payload::encode(&TokenGrant {
                client_id: grant.client_id.clone(),
                scopes: access_scopes.to_vec(),
                resource: grant.resource.clone(),
            })
        };
        let access_record = TokenRecord {
            kind: TokenKind::AccessToken,
            hash: TokenHash::of(&access_token),
            grant_id: grant_id.clone(),
            expires_at: now.plus(self.settings.token_lifetime_secs),
            payload: access_payload,
        };
        let access_expires_at = access_record.expires_at;
        minted.add(access_record.kind, access_record.hash, access_expires_at);
        self.tokens.insert(access_record).await?;
        let with_refresh = match minting {
            Minting::Code { with_refresh } => with_refresh,
            Minting::Rotation { .. } => true,
            Minting::Machine { .. } => false,
        };
        let refresh_token = if with_refresh {
            let token = secret::generate(secret::prefix::REFRESH_TOKEN);
            let refresh_record = TokenRecord {
                kind: TokenKind::RefreshToken,
                hash: TokenHash::of(&token),
                grant_id: grant_id.clone(),
                expires_at: now.plus(self.settings.refresh_token_lifetime_secs),
                payload: grant_payload,
            };
            minted.add(
                refresh_record.kind,
                refresh_record.hash,
                refresh_record.expires_at,
            );
            self.tokens.insert(refresh_record).await?;
            Some(token)
        } else {
            None
        };
        if let (Minting::Rotation { presented }, Some(refresh_token)) = (minting, &refresh_token) {
            let pair = SuccessorPair {
                access_token: access_token.clone(),
                access_expires_at,
                refresh_token: refresh_token.clone(),
                scopes: access_scopes.to_vec(),
            };
            if !self
                .keep_successor(presented, grant_id, &pair, now, &mut minted)
                .await?
            {
                // Another request rotated this token meanwhile (a retry that found this rotation
                // slow): its pair is the one chain, and ours goes before anyone sees it.
                self.take_back(&minted).await?;
                return self.answer_with_kept_pair(presented, grant_id, grant).await;
            }
        }
        self.settle_issue(grant_id, grant, &minted).await?;
        Ok(TokenResponse::bearer(
            access_token,
            self.settings.token_lifetime_secs,
            refresh_token,
            access_scopes,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_tokens() {
        let response = TokenResponse {
            access_token: "mcp_at_secret-access".into(),
            token_type: "Bearer",
            expires_in: 60,
            refresh_token: Some("mcp_rt_secret-refresh".into()),
            scope: "mcp".to_owned(),
        };
        let output = format!("{response:?}");
        assert!(!output.contains("secret-access"), "{output}");
        assert!(!output.contains("secret-refresh"), "{output}");
        assert!(output.contains("Bearer"), "{output}");
    }
}
