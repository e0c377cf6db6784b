//! A small client for the Confluent schema-registry REST API (settings, compatibility, probe), and
//! the settings handed to `schema_registry_converter` for encoding and decoding.

use std::time::Duration;

use eventfold_runtime::{Env, SettingsError};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use serde::{Deserialize, Serialize};

/// Media type of the Confluent registry API.
const REGISTRY_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A registry call that failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached or did not answer in time (retryable).
    #[error("schema registry at {url} unreachable: {source}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The registry answered with an error status.
    #[error("schema registry {method} {path} answered {status}: {body}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Response body (the registry's error message).
        body: String,
    },
    /// The converter settings could not be built.
    #[error("schema registry settings: {0}")]
    Settings(String),
}

/// Where the registry is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// `SCHEMA_REGISTRY_URL`: base URL of the Confluent-compatible API.
    pub url: String,
    /// `SCHEMA_REGISTRY_USERNAME` / `SCHEMA_REGISTRY_PASSWORD` for basic auth, when set.
    pub basic_auth: Option<(String, String)>,
}

impl RegistrySettings {
    /// Reads the registry variables; the URL defaults to the local stack's registry.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let url = env
            .string("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081")
            .trim_end_matches('/')
            .to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SettingsError::Invalid {
                var: "SCHEMA_REGISTRY_URL".into(),
                value: url,
                reason: "expected an http:// or https:// URL".into(),
            });
        }
        eventfold_runtime::settings::refuse_insecure(
            env,
            "SCHEMA_REGISTRY_URL",
            &url,
            url.starts_with("http://"),
            "SCHEMA_REGISTRY_INSECURE",
            "an http:// registry is refused",
        )?;
        let basic_auth = match (
            env.raw("SCHEMA_REGISTRY_USERNAME"),
            env.raw("SCHEMA_REGISTRY_PASSWORD"),
        ) {
            (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
            _ => None,
        };
        Ok(Self { url, basic_auth })
    }

    /// Settings for `schema_registry_converter`'s encoder and decoder.
    pub fn converter_settings(&self) -> Result<SrSettings, RegistryError> {
        let mut builder = SrSettings::new_builder(self.url.clone());
        builder.set_timeout(Duration::from_secs(10));
        if let Some((user, pass)) = &self.basic_auth {
            builder.set_basic_authorization(user, Some(pass));
        }
        builder
            .build()
            .map_err(|e| RegistryError::Settings(e.to_string()))
    }
}

/// A compatibility level of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    /// New schemas can read data written with the previous one.
    Backward,
    /// New schemas can read data written with any earlier one.
    BackwardTransitive,
    /// The previous schema can read data written with the new one.
    Forward,
    /// Forward, against every earlier schema.
    ForwardTransitive,
    /// Backward and forward.
    Full,
    /// Full, against every earlier schema.
    FullTransitive,
    /// No check.
    None,
}

/// Registry REST calls beyond encoding: configuration and probing.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    settings: RegistrySettings,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct ConfigBody {
    #[serde(alias = "compatibilityLevel")]
    compatibility: Option<Compatibility>,
}

impl RegistryClient {
    /// A client with a 10 s request timeout.
    pub fn new(settings: RegistrySettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self { settings, http }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.settings.url, path))
            .header(reqwest::header::ACCEPT, REGISTRY_CONTENT_TYPE);
        if let Some((user, pass)) = &self.settings.basic_auth {
            req = req.basic_auth(user, Some(pass));
        }
        req
    }

    async fn send(
        &self,
        method: &'static str,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let resp = req
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: self.settings.url.clone(),
                source,
            })?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            Err(RegistryError::Status {
                method,
                path: path.to_owned(),
                status,
                body,
            })
        }
    }

    /// Succeeds when the registry answers its subject listing.
    pub async fn probe(&self) -> Result<(), RegistryError> {
        let path = "/subjects";
        self.send("GET", path, self.request(reqwest::Method::GET, path))
            .await
            .map(drop)
    }

    /// A `/readyz` check named `schema-registry` running [`RegistryClient::probe`].
    pub fn readiness_check(&self) -> eventfold_runtime::ReadinessCheck {
        let client = self.clone();
        eventfold_runtime::ReadinessCheck::new("schema-registry", move || {
            let client = client.clone();
            async move { client.probe().await.map_err(|e| e.to_string()) }
        })
    }

    /// The global compatibility level.
    pub async fn compatibility(&self) -> Result<Option<Compatibility>, RegistryError> {
        let path = "/config";
        let resp = self
            .send("GET", path, self.request(reqwest::Method::GET, path))
            .await?;
        let body: ConfigBody = resp
            .json()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: self.settings.url.clone(),
                source,
            })?;
        Ok(body.compatibility)
    }

    /// Sets the global compatibility level.
    pub async fn set_compatibility(&self, level: Compatibility) -> Result<(), RegistryError> {
        let path = "/config";
        let req = self
            .request(reqwest::Method::PUT, path)
            .header(reqwest::header::CONTENT_TYPE, REGISTRY_CONTENT_TYPE)
            .body(serde_json::json!({ "compatibility": level }).to_string());
        self.send("PUT", path, req).await.map(drop)
    }
}

/// The registry's verdict on a candidate schema for a subject.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CompatibilityReport {
    /// True when the subject's compatibility level accepts the schema.
    pub is_compatible: bool,
    /// Why not (the registry's messages name the version and the offending field).
    #[serde(default)]
    pub messages: Vec<String>,
}

/// A schema found under a subject.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubjectSchema {
    /// Global schema id.
    pub id: u32,
    /// Version within the subject.
    pub version: u32,
}

fn schema_body(schema: &str) -> String {
    serde_json::json!({ "schemaType": "AVRO", "schema": schema }).to_string()
}

fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl RegistryClient {
    async fn post_json(
        &self,
        path: &str,
        body: String,
    ) -> Result<reqwest::Response, RegistryError> {
        let req = self
            .request(reqwest::Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, REGISTRY_CONTENT_TYPE)
            .body(body);
        self.send("POST", path, req).await
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        resp: reqwest::Response,
    ) -> Result<T, RegistryError> {
        resp.json()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: self.settings.url.clone(),
                source,
            })
    }

    /// The compatibility level that applies to `subject` (its own, else the global one).
    pub async fn subject_compatibility(
        &self,
        subject: &str,
    ) -> Result<Option<Compatibility>, RegistryError> {
        let path = format!("/config/{}", path_segment(subject));
        match self
            .send("GET", &path, self.request(reqwest::Method::GET, &path))
            .await
        {
            Ok(resp) => Ok(self.json::<ConfigBody>(resp).await?.compatibility),
            Err(RegistryError::Status { status: 404, .. }) => self.compatibility().await,
            Err(e) => Err(e),
        }
    }

    /// Whether `schema` could be registered as the next version of `subject` (a subject that does
    /// not exist yet accepts anything).
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<CompatibilityReport, RegistryError> {
        let path = format!(
            "/compatibility/subjects/{}/versions/latest?verbose=true",
            path_segment(subject)
        );
        match self.post_json(&path, schema_body(schema)).await {
            Ok(resp) => self.json(resp).await,
            Err(RegistryError::Status { status: 404, .. }) => Ok(CompatibilityReport {
                is_compatible: true,
                messages: Vec::new(),
            }),
            Err(e) => Err(e),
        }
    }

    /// The id and version of `schema` under `subject`, if it is registered there.
    pub async fn lookup(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<Option<SubjectSchema>, RegistryError> {
        let path = format!("/subjects/{}", path_segment(subject));
        match self.post_json(&path, schema_body(schema)).await {
            Ok(resp) => self.json(resp).await.map(Some),
            Err(RegistryError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Registers `schema` under `subject` (the existing id when it is already there).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        #[derive(Deserialize)]
        struct Id {
            id: u32,
        }
        let path = format!("/subjects/{}/versions", path_segment(subject));
        let resp = self.post_json(&path, schema_body(schema)).await?;
        Ok(self.json::<Id>(resp).await?.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_an_http_registry_unless_waived() {
        let prod = |url: &str, waive: &str| {
            RegistrySettings::from_env(&Env::from_pairs([
                ("EVENTFOLD_PROFILE", "production"),
                ("SCHEMA_REGISTRY_URL", url),
                ("SCHEMA_REGISTRY_INSECURE", waive),
            ]))
        };
        assert!(prod("http://sr:8081", "").is_err());
        assert!(prod("https://sr:8081", "").is_ok());
        assert!(prod("http://sr:8081", "true").is_ok());
    }

    #[test]
    fn refuses_a_registry_url_without_a_scheme() {
        let env = Env::from_pairs([("SCHEMA_REGISTRY_URL", "127.0.0.1:8081")]);
        let err = RegistrySettings::from_env(&env).unwrap_err();
        assert!(err.to_string().contains("SCHEMA_REGISTRY_URL"), "{err}");
    }

    #[test]
    fn trims_a_trailing_slash() {
        let env = Env::from_pairs([("SCHEMA_REGISTRY_URL", "http://r:8081/apis/ccompat/v7/")]);
        let s = RegistrySettings::from_env(&env).unwrap();
        assert_eq!(s.url, "http://r:8081/apis/ccompat/v7");
    }

    #[test]
    fn compatibility_levels_use_the_registry_spelling() {
        assert_eq!(
            serde_json::to_string(&Compatibility::BackwardTransitive).unwrap(),
            "\"BACKWARD_TRANSITIVE\""
        );
    }
}
