//! eventfold over HTTP: `POST {url}/v1/CrossReference/{id}/commands/{command}` to a running
//! command-service, one `Idempotency-Key` per request, through a pooled keep-alive client that
//! sends the run's bearer token (if any) on every request. 200/201 is applied, 409 is a conflict
//! surfaced to the caller, anything else a failure.

use std::time::Duration;

use anyhow::Context;
use eventfold_reference::biblos::cross_reference::Command;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use crate::workload::{Outcome, Target};

/// A command-service reached over HTTP.
pub struct Http {
    client: reqwest::Client,
    base_url: String,
}

impl Http {
    /// A client for `base_url` keeping up to `connections` idle connections, sending
    /// `Authorization: Bearer <token>` on every request when `token` is given.
    pub fn new(base_url: &str, connections: usize, token: Option<&str>) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            headers.insert(AUTHORIZATION, bearer(token)?);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(connections)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()
            .context("failed to build the HTTP client")?;
        Ok(Self {
            client,
            base_url: base_url.to_owned(),
        })
    }

    /// Why the service cannot be benchmarked, if it cannot: `/healthz` must answer 200.
    pub async fn unreachable(&self) -> Option<String> {
        let url = format!("{}/healthz", self.base_url);
        match self.client.get(&url).send().await {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("GET {url} answered {}", r.status())),
            Err(e) => Some(format!("GET {url} failed: {e}")),
        }
    }
}

/// The `Authorization` value for `token`, marked sensitive so that it is never logged.
fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .context("the bearer token is not a valid header value")?;
    value.set_sensitive(true);
    Ok(value)
}

/// The command's name and JSON body, as the URL and request body carry them.
fn name_and_body(command: &Command) -> (String, serde_json::Value) {
    // Commands serialize externally tagged: {"ValidateCrossReference": {...fields}}.
    let tagged = serde_json::to_value(command).expect("commands serialize to JSON");
    let serde_json::Value::Object(map) = tagged else {
        unreachable!("an externally tagged enum serializes to an object")
    };
    map.into_iter()
        .next()
        .expect("an externally tagged enum has one key")
}

impl Target for Http {
    async fn send(&self, aggregate_id: &str, command: Command) -> Outcome {
        let (name, body) = name_and_body(&command);
        let url = format!(
            "{}/v1/CrossReference/{aggregate_id}/commands/{name}",
            self.base_url
        );
        let response = self
            .client
            .post(url)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await;
        match response {
            Ok(r) if matches!(r.status(), StatusCode::OK | StatusCode::CREATED) => {
                // Read the body so the connection goes back to the pool.
                match r.bytes().await {
                    Ok(_) => Outcome::Applied,
                    Err(e) => Outcome::Failed(format!("reading the response failed: {e}")),
                }
            }
            Ok(r) if r.status() == StatusCode::CONFLICT => {
                let _ = r.bytes().await;
                Outcome::Conflict
            }
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                Outcome::Failed(format!(
                    "{status}: {}",
                    body.chars().take(200).collect::<String>()
                ))
            }
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_command_fields_as_the_body_and_its_name_in_the_url() {
        let mut rng = fastrand::Rng::with_seed(3);
        let (name, body) = name_and_body(&crate::workload::validate(&mut rng));
        assert_eq!(name, "ValidateCrossReference");
        assert_eq!(body["validator_agent"], "theological_validator");
    }

    #[test]
    fn sends_the_token_as_a_sensitive_bearer_credential() {
        let value = bearer("a.b.c").unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer a.b.c");
        assert!(value.is_sensitive());
        assert!(bearer("a.b\nc").is_err());
    }
}
