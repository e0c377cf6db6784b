//! Neo4j connection settings and probe for the graph read models.

use eventfold_runtime::{Env, ReadinessCheck, SettingsError};
use neo4rs::{ConfigBuilder, Graph, query};

/// How to reach Neo4j over Bolt.
#[derive(Debug, Clone)]
pub struct Neo4jSettings {
    /// `NEO4J_URI`, e.g. `bolt://127.0.0.1:7687`.
    pub uri: String,
    /// `NEO4J_USER`.
    pub user: String,
    /// `NEO4J_PASSWORD`.
    pub password: String,
    /// `NEO4J_DATABASE` (default `neo4j`).
    pub database: String,
    /// `NEO4J_LABEL_SUFFIX` (default empty): appended to every label and relationship type the
    /// graph read models write, so that installations (or tests) can share one database.
    pub label_suffix: String,
}

impl Neo4jSettings {
    /// Reads the Neo4j variables; defaults point at the local stack.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let uri = env.string("NEO4J_URI", "bolt://127.0.0.1:7687");
        eventfold_runtime::settings::refuse_insecure(
            env,
            "NEO4J_URI",
            &uri,
            !(uri.starts_with("bolt+s://") || uri.starts_with("neo4j+s://")),
            "NEO4J_INSECURE",
            "a Neo4j connection without verified TLS (bolt+s:// or neo4j+s://) is refused",
        )?;
        Ok(Self {
            uri,
            user: env.string("NEO4J_USER", "neo4j"),
            password: env.required("NEO4J_PASSWORD")?,
            database: env.string("NEO4J_DATABASE", "neo4j"),
            label_suffix: label_suffix(env)?,
        })
    }

    /// A connection pool that connects on first use.
    pub fn graph(&self) -> Result<Graph, neo4rs::Error> {
        let config = ConfigBuilder::default()
            .uri(&self.uri)
            .user(&self.user)
            .password(&self.password)
            .db(self.database.as_str())
            .max_connections(8)
            .build()?;
        Graph::connect(config)
    }
}

/// Succeeds when Neo4j answers `RETURN 1`.
pub async fn probe(graph: &Graph) -> Result<(), neo4rs::Error> {
    let mut rows = graph.execute(query("RETURN 1 AS one")).await?;
    while rows.next().await?.is_some() {}
    Ok(())
}

/// A `/readyz` check named `neo4j`.
pub fn readiness_check(graph: Graph) -> ReadinessCheck {
    ReadinessCheck::new("neo4j", move || {
        let graph = graph.clone();
        async move { probe(&graph).await.map_err(|e| e.to_string()) }
    })
}

fn label_suffix(env: &Env) -> Result<String, SettingsError> {
    let s = env.string("NEO4J_LABEL_SUFFIX", "");
    if s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(s)
    } else {
        Err(SettingsError::Invalid {
            var: "NEO4J_LABEL_SUFFIX".into(),
            value: s,
            reason: "only letters, digits and `_` may follow a label".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_needs_a_verified_tls_uri_unless_waived() {
        let prod = |uri: &str, waive: &str| {
            Neo4jSettings::from_env(&Env::from_pairs([
                ("NEO4J_PASSWORD", "pw"),
                ("EVENTFOLD_PROFILE", "production"),
                ("NEO4J_URI", uri),
                ("NEO4J_INSECURE", waive),
            ]))
        };
        assert!(prod("bolt://db:7687", "").is_err());
        assert!(prod("neo4j+ssc://db:7687", "").is_err());
        assert!(prod("bolt+s://db:7687", "").is_ok());
        assert!(prod("bolt://db:7687", "true").is_ok());
    }
}
