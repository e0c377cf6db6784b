//! The Avro codec and `eventfold schemas` against the real schema registry: every event type and
//! version round trips, bad records are typed errors, a registry outage is retryable and cached
//! ids keep working, the codec never registers (a schema missing under its subject is a
//! configuration error naming it), the incompatible fixture is refused, registration is
//! idempotent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventfold_avro::{AvroCodec, Catalog, CodecError, RegistryClient, subject_for, topic_for};
use eventfold_cli::{check, register};
use eventfold_tests::{Stack, unique};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn golden(file: &eventfold_avro::SchemaFile, ext: &str) -> Value {
    let path = repo().join(format!(
        "schemas/golden/{}/{}.v{}.{ext}",
        file.aggregate_type, file.event_type, file.version
    ));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::embedded().unwrap())
}

fn codec(stack: &Stack) -> AvroCodec {
    AvroCodec::new(stack.registry.converter_settings().unwrap(), catalog())
}

/// Registers `file` under its subject for `topic` (the codec only looks ids up).
async fn register(stack: &Stack, topic: &str, file: &eventfold_avro::SchemaFile) -> u32 {
    RegistryClient::new(stack.registry.clone())
        .register(&subject_for(topic, &file.fullname), &file.text)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_event_type_and_version_round_trips_through_the_real_registry() {
    let stack = Stack::from_env().await;
    let prefix = format!("{}.", unique("avro-rt"));
    stack.register_schemas(&prefix).await;
    let writer = codec(&stack);
    let reader = codec(&stack);
    let client = RegistryClient::new(stack.registry.clone());
    let files = writer.catalog().files().to_vec();
    assert!(files.len() >= 26);
    for file in &files {
        let topic = topic_for(&prefix, &file.aggregate_type);
        let sample = golden(file, "json");
        let bytes = writer
            .encode(&topic, &file.event_type, file.version, &sample)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.path));
        assert_eq!(bytes[0], 0, "magic byte");
        let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());

        // The id is the one the registry holds for this version under its record subject.
        let subject = subject_for(&topic, &file.fullname);
        let found = client.lookup(&subject, &file.text).await.unwrap();
        assert_eq!(
            found.map(|f| (f.id, f.version)),
            Some((id, file.version)),
            "{subject}"
        );

        // A codec that never saw the schema fetches it by id and recognises the version.
        let decoded = reader.decode(&topic, &bytes).await.unwrap();
        assert_eq!(decoded.subject, subject);
        assert_eq!(
            (&*decoded.event_type, decoded.schema_version),
            (file.event_type.as_str(), file.version)
        );
        assert_eq!(decoded.payload, sample, "{}", file.path);
        let latest = eventfold_reference::read_stored(
            &file.aggregate_type,
            &decoded.event_type,
            decoded.schema_version,
            decoded.payload,
        )
        .unwrap()
        .unwrap();
        assert_eq!(latest, golden(file, "expected.json"), "{}", file.path);
    }
}

#[tokio::test]
async fn a_consumed_v1_record_becomes_the_v2_domain_event() {
    use eventfold_reference::opportunity::opportunity::Event;
    let stack = Stack::from_env().await;
    let topic = unique("avro-v1");
    let writer = codec(&stack);
    let v1 = writer
        .catalog()
        .get("OpportunityCreated", 1)
        .unwrap()
        .clone();
    register(&stack, &topic, &v1).await;
    let bytes = writer
        .encode(&topic, "OpportunityCreated", 1, &golden(&v1, "json"))
        .await
        .unwrap();
    let event: Event = codec(&stack)
        .decode(&topic, &bytes)
        .await
        .unwrap()
        .into_event()
        .unwrap();
    let Event::OpportunityCreated(e) = event else {
        panic!("{event:?}")
    };
    assert_eq!(e.market_size_estimate, 1_000_000);
    assert_eq!(e.confidence_score, 0.7);
}

#[tokio::test]
async fn bad_records_are_typed_errors_naming_subject_id_and_offset() {
    let stack = Stack::from_env().await;
    let topic = unique("avro-bad");
    let codec = codec(&stack);

    let err = codec.decode(&topic, &[1, 0, 0, 0, 1, 2]).await.unwrap_err();
    assert!(
        matches!(err, CodecError::BadHeader { first: Some(1), .. }),
        "{err}"
    );

    let err = codec
        .decode(&topic, &[0, 0x7f, 0xff, 0xff, 0xf0, 2])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::UnknownSchemaId {
                schema_id: 0x7fff_fff0
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());

    let file = codec
        .catalog()
        .get("OpportunityArchived", 1)
        .unwrap()
        .clone();
    register(&stack, &topic, &file).await;
    let bytes = codec
        .encode(&topic, &file.event_type, 1, &golden(&file, "json"))
        .await
        .unwrap();
    let err = codec
        .decode(&topic, &bytes[..bytes.len() - 3])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CodecError::Body { .. }), "{text}");
    assert!(
        text.contains(&subject_for(&topic, &file.fullname)) && text.contains("at byte"),
        "{text}"
    );

    // A schema this build does not know (a newer build's version) is refused, not guessed.
    let client = RegistryClient::new(stack.registry.clone());
    let newer = file.text.replace(
        r#""fields": ["#,
        r#""fields": [{"name": "archived_by", "type": ["null", "string"], "default": null},"#,
    );
    let id = client
        .register(&subject_for(&topic, &file.fullname), &newer)
        .await
        .unwrap();
    let mut record = vec![0];
    record.extend_from_slice(&id.to_be_bytes());
    record.extend_from_slice(&[0, 2, b'x']);
    let err = codec.decode(&topic, &record).await.unwrap_err();
    assert!(
        matches!(err, CodecError::UnknownWriterSchema { .. }),
        "{err}"
    );
}

/// A TCP forwarder in front of the real registry that the test can cut and restore.
struct Cut {
    addr: SocketAddr,
    target: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Cut {
    fn start(addr: SocketAddr, target: String) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let listener = socket.listen(64).unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let inner = tasks.clone();
        let upstream = target.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                inner.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self {
            addr,
            target,
            tasks,
        }
    }

    async fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    fn restore(&self) -> Self {
        Self::start(self.addr, self.target.clone())
    }
}

#[tokio::test]
async fn a_registry_outage_is_retryable_and_cached_ids_keep_working() {
    let stack = Stack::from_env().await;
    let (host, path) = stack
        .registry
        .url
        .split_once("://")
        .map(|(_, rest)| rest.split_once('/').unwrap_or((rest, "")))
        .unwrap();
    let cut = Cut::start("127.0.0.1:0".parse().unwrap(), host.to_owned());
    let mut settings = stack.registry.clone();
    settings.url = format!("http://{}/{path}", cut.addr)
        .trim_end_matches('/')
        .to_owned();
    let codec = AvroCodec::new(settings.converter_settings().unwrap(), catalog());
    let topic = unique("avro-outage");
    let archived = codec
        .catalog()
        .get("OpportunityArchived", 1)
        .unwrap()
        .clone();
    let validated = codec
        .catalog()
        .get("OpportunityValidated", 1)
        .unwrap()
        .clone();
    register(&stack, &topic, &archived).await;
    register(&stack, &topic, &validated).await;
    let bytes = codec
        .encode(&topic, "OpportunityArchived", 1, &golden(&archived, "json"))
        .await
        .unwrap();
    // Resolved through the real registry, but never seen by `codec`.
    let unseen = AvroCodec::new(stack.registry.converter_settings().unwrap(), catalog())
        .encode(
            &topic,
            "OpportunityValidated",
            1,
            &golden(&validated, "json"),
        )
        .await
        .unwrap();

    cut.cut().await;
    let again = codec
        .encode(&topic, "OpportunityArchived", 1, &golden(&archived, "json"))
        .await
        .expect("a cached id needs no registry");
    assert_eq!(again, bytes);
    assert_eq!(
        codec.decode(&topic, &bytes).await.unwrap().schema_version,
        1
    );
    for err in [
        codec
            .encode(
                &topic,
                "OpportunityValidated",
                1,
                &golden(&validated, "json"),
            )
            .await
            .unwrap_err(),
        codec.decode(&topic, &unseen).await.unwrap_err(),
    ] {
        assert!(err.is_retryable(), "{err}");
        assert!(
            matches!(err, CodecError::RegistryUnavailable { .. }),
            "{err}"
        );
    }

    let _restored = cut.restore();
    let decoded = codec.decode(&topic, &unseen).await.expect("healed");
    assert_eq!(&*decoded.event_type, "OpportunityValidated");
}

#[tokio::test]
async fn the_codec_never_registers_and_names_the_subject_of_a_missing_schema() {
    let stack = Stack::from_env().await;
    let client = RegistryClient::new(stack.registry.clone());
    let topic = unique("avro-unregistered");
    let codec = codec(&stack);
    let v1 = codec
        .catalog()
        .get("OpportunityCreated", 1)
        .unwrap()
        .clone();
    let v2 = codec
        .catalog()
        .get("OpportunityCreated", 2)
        .unwrap()
        .clone();
    let subject = subject_for(&topic, &v1.fullname);

    // No such subject (40401), then the subject without this version (40403): both are a
    // configuration error naming the subject and the command, never retryable, never a
    // registration.
    let subject_missing = codec
        .encode(&topic, "OpportunityCreated", 1, &golden(&v1, "json"))
        .await
        .unwrap_err();
    assert!(client.lookup(&subject, &v1.text).await.unwrap().is_none());
    register(&stack, &topic, &v1).await;
    let version_missing = codec
        .encode(&topic, "OpportunityCreated", 2, &golden(&v2, "json"))
        .await
        .unwrap_err();
    assert!(client.lookup(&subject, &v2.text).await.unwrap().is_none());
    for (err, code, version) in [(subject_missing, "40401", 1), (version_missing, "40403", 2)] {
        assert!(
            matches!(&err, CodecError::NotRegistered { subject: s, version: v, .. } if *s == subject && *v == version),
            "{err}"
        );
        assert!(err.is_configuration() && !err.is_retryable(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&subject)
                && text.contains("eventfold schemas register")
                && text.contains(code),
            "{text}"
        );
    }

    // Registered: the same codec finds it (nothing negative was cached).
    let id = register(&stack, &topic, &v2).await;
    let bytes = codec
        .encode(&topic, "OpportunityCreated", 2, &golden(&v2, "json"))
        .await
        .unwrap();
    assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), id);
}

#[tokio::test]
async fn the_incompatible_fixture_is_refused_by_check_and_by_the_registry() {
    let stack = Stack::from_env().await;
    let client = RegistryClient::new(stack.registry.clone());
    let prefix = format!("{}.", unique("avro-incompatible"));
    let fixture = Catalog::load_dir(&repo().join("tests/fixtures/incompatible")).unwrap();

    let local = check::check_local(&fixture, eventfold_avro::Compatibility::Backward, &prefix);
    assert_eq!(local.len(), 1, "{local:?}");
    assert!(local[0].message.contains("region"), "{}", local[0]);

    // With v1 registered, the registry refuses v2 and names the field.
    let v1 = fixture.get("OpportunityCreated", 1).unwrap();
    let subject = eventfold_cli::subject_of(&prefix, v1);
    client.register(&subject, &v1.text).await.unwrap();
    let (_, findings) = check::check_registry(&fixture, &client, &prefix)
        .await
        .unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    let text = findings[0].to_string();
    assert!(
        text.contains(&subject) && text.contains("v2") && text.contains("region"),
        "{text}"
    );
    let (what, err) = register::register_all(&fixture, &client, &prefix)
        .await
        .unwrap_err();
    assert!(what.contains("v2"), "{what}: {err}");
}

#[tokio::test]
async fn registering_every_schema_is_idempotent_and_then_checks_clean() {
    let stack = Stack::from_env().await;
    let client = RegistryClient::new(stack.registry.clone());
    let prefix = format!("{}.", unique("avro-register"));
    let catalog = catalog();
    let first = register::register_all(&catalog, &client, &prefix)
        .await
        .unwrap();
    assert_eq!(first.len(), catalog.files().len());
    let second = register::register_all(&catalog, &client, &prefix)
        .await
        .unwrap();
    assert_eq!(first, second, "same ids, no new versions");
    let (notes, findings) = check::check_registry(&catalog, &client, &prefix)
        .await
        .unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    let v2 = notes
        .iter()
        .find(|n| n.contains("OpportunityCreated: v2"))
        .unwrap();
    assert!(v2.contains("subject version 2"), "{v2}");
}
