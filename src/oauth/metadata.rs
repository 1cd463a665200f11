//! Discovery documents: RFC 8414 authorization server metadata and RFC 9728 protected resource
//! metadata. Built once at start; the issuer string is the same byte for byte everywhere.

use serde_json::{Value, json};

use super::Settings;
use super::assertion::keys::ALLOWED_ALGORITHM_NAMES;
use crate::paths;

/// [`paths::AUTHORIZATION_SERVER_METADATA`].
pub(crate) fn authorization_server(s: &Settings) -> Value {
    let issuer = &s.issuer;
    let mut doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{}", paths::AUTHORIZE),
        "token_endpoint": format!("{issuer}{}", paths::TOKEN),
        "revocation_endpoint": format!("{issuer}{}", paths::REVOKE),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_types(s),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        "scopes_supported": s.scopes,
        "authorization_response_iss_parameter_supported": true,
        "protected_resources": [s.resource.as_str()],
    });
    if let Some(map) = doc.as_object_mut() {
        // Metadata document clients may sign assertions with the keys they publish, registered
        // clients with the keys they register, and the pre-registered client with the keys
        // configured for it.
        let machines_sign = s.machine_clients.iter().any(|m| m.assertion.is_some());
        if s.client_id_metadata_documents
            || s.dynamic_registration
            || s.pre_registered.assertion.is_some()
            || machines_sign
        {
            for methods in [
                "token_endpoint_auth_methods_supported",
                "revocation_endpoint_auth_methods_supported",
            ] {
                if let Some(Value::Array(list)) = map.get_mut(methods) {
                    list.push(json!("private_key_jwt"));
                }
            }
            for algorithms in [
                "token_endpoint_auth_signing_alg_values_supported",
                "revocation_endpoint_auth_signing_alg_values_supported",
            ] {
                map.insert(algorithms.into(), json!(ALLOWED_ALGORITHM_NAMES));
            }
        }
        if s.dynamic_registration {
            map.insert(
                "registration_endpoint".into(),
                json!(format!("{issuer}{}", paths::REGISTER)),
            );
        }
        if !s.introspection_clients.is_empty() {
            map.insert(
                "introspection_endpoint".into(),
                json!(format!("{issuer}{}", paths::INTROSPECT)),
            );
            let mut methods = vec!["client_secret_post", "client_secret_basic"];
            if s.pre_registered.assertion.is_some() {
                methods.push("private_key_jwt");
                map.insert(
                    "introspection_endpoint_auth_signing_alg_values_supported".into(),
                    json!(ALLOWED_ALGORITHM_NAMES),
                );
            }
            map.insert(
                "introspection_endpoint_auth_methods_supported".into(),
                json!(methods),
            );
        }
        if s.client_id_metadata_documents {
            // Claude picks metadata documents only when this is true *and* `none` is among the
            // token endpoint methods (it always is here).
            map.insert("client_id_metadata_document_supported".into(), json!(true));
        }
    }
    doc
}

/// `client_credentials` is offered only when some machine client may use it.
fn grant_types(s: &Settings) -> Vec<&'static str> {
    let mut grants = vec!["authorization_code", "refresh_token"];
    if !s.machine_clients.is_empty() {
        grants.push("client_credentials");
    }
    grants
}

/// [`paths::PROTECTED_RESOURCE_METADATA`], with or without the MCP path after it.
pub(crate) fn protected_resource(s: &Settings) -> Value {
    json!({
        "resource": s.resource.as_str(),
        "authorization_servers": [s.issuer],
        "scopes_supported": s.default_scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": s.app_name,
    })
}
