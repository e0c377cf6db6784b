//! Docker fallback (feature `testcontainers`): starts the servers whose address is not set, once per
//! test process. Needs a Docker engine; CI and `make test` use the real local stack instead.

use std::any::Any;
use std::sync::Mutex;

use eventfold_runtime::Env;
use testcontainers_modules::kafka::apache::{KAFKA_PORT, Kafka};
use testcontainers_modules::neo4j::Neo4j;
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{GenericImage, ImageExt};
use tokio::sync::OnceCell;

/// Addresses of the containers started by this process.
static STARTED: OnceCell<Vec<(String, String)>> = OnceCell::const_new();
/// Keeps the containers alive for the whole test process.
static KEEP: Mutex<Vec<Box<dyn Any + Send>>> = Mutex::new(Vec::new());

fn keep(container: impl Any + Send) {
    KEEP.lock()
        .expect("container list")
        .push(Box::new(container));
}

/// Fills in every unset server address in `env` with a freshly started container.
pub(crate) async fn start_missing(env: &mut Env) {
    let missing: Vec<&str> = [
        "DATABASE_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "SCHEMA_REGISTRY_URL",
        "NEO4J_URI",
    ]
    .into_iter()
    .filter(|var| env.raw(var).is_none())
    .collect();
    let started = STARTED
        .get_or_init(|| async move {
            let mut vars = Vec::new();
            for var in missing {
                vars.extend(start(var).await);
            }
            vars
        })
        .await;
    for (k, v) in started {
        env.set(k.clone(), v.clone());
    }
}

async fn start(var: &str) -> Vec<(String, String)> {
    match var {
        "DATABASE_URL" => {
            let c = Postgres::default().start().await.expect("start postgres");
            let port = c.get_host_port_ipv4(5432).await.expect("postgres port");
            keep(c);
            vec![(
                var.into(),
                format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"),
            )]
        }
        "KAFKA_BOOTSTRAP_SERVERS" => {
            let c = Kafka::default().start().await.expect("start kafka");
            let port = c.get_host_port_ipv4(KAFKA_PORT).await.expect("kafka port");
            keep(c);
            vec![(var.into(), format!("127.0.0.1:{port}"))]
        }
        "SCHEMA_REGISTRY_URL" => {
            // Apicurio Registry 3 with in-memory storage serves the Confluent API under /apis/ccompat/v7.
            let c = GenericImage::new("apicurio/apicurio-registry", "3.0.7")
                .with_exposed_port(8080.tcp())
                .with_wait_for(WaitFor::message_on_stdout("Installed features"))
                .with_env_var("APICURIO_RULES_GLOBAL_COMPATIBILITY", "BACKWARD")
                .start()
                .await
                .expect("start schema registry");
            let port = c.get_host_port_ipv4(8080).await.expect("registry port");
            keep(c);
            vec![(
                var.into(),
                format!("http://127.0.0.1:{port}/apis/ccompat/v7"),
            )]
        }
        "NEO4J_URI" => {
            let c = Neo4j::default()
                .with_version("5.26")
                .start()
                .await
                .expect("start neo4j");
            let port = c.image().bolt_port_ipv4().expect("bolt port");
            let user = c.image().user().unwrap_or("neo4j").to_owned();
            let password = c.image().password().unwrap_or("neo4j").to_owned();
            keep(c);
            vec![
                (var.into(), format!("bolt://127.0.0.1:{port}")),
                ("NEO4J_USER".into(), user),
                ("NEO4J_PASSWORD".into(), password),
            ]
        }
        other => unreachable!("no container for {other}"),
    }
}
