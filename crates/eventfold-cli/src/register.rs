//! `eventfold schemas register`: every version of every subject, in version order. Registering a
//! version that is already there returns its id and changes nothing, so the command is idempotent.

use eventfold_avro::{Catalog, RegistryClient, RegistryError};

use crate::check::chains;
use crate::subject_of;

/// One registered version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The subject.
    pub subject: String,
    /// The local version.
    pub version: u32,
    /// The registry's schema id.
    pub id: u32,
}

/// Registers every version of every event type, oldest first; stops at the first refusal.
pub async fn register_all(
    catalog: &Catalog,
    client: &RegistryClient,
    topic_prefix: &str,
) -> Result<Vec<Registered>, (String, RegistryError)> {
    let mut done = Vec::new();
    for chain in chains(catalog) {
        for file in chain {
            let subject = subject_of(topic_prefix, file);
            let id = client
                .register(&subject, &file.text)
                .await
                .map_err(|e| (format!("{subject} v{}", file.version), e))?;
            done.push(Registered {
                subject,
                version: file.version,
                id,
            });
        }
    }
    Ok(done)
}
