//! Snapshots: a stream's serialized state at a version, tagged with the state's schema version,
//! so hydration reads the newest snapshot and only the events after it. Keyed by stream
//! (`tenant`, aggregate type and id) like the events.

use std::collections::HashMap;

use uuid::Uuid;

use crate::store::{EventStore, RecordedEvent};

/// The part of a stored event that hydration needs.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredEvent {
    /// Event id.
    pub event_id: Uuid,
    /// Event type.
    pub event_type: String,
    /// Schema version the payload was written with.
    pub schema_version: i32,
    /// Aggregate version.
    pub version: i64,
    /// Payload.
    pub payload: serde_json::Value,
}

impl From<RecordedEvent> for StoredEvent {
    fn from(e: RecordedEvent) -> Self {
        Self {
            event_id: e.event_id,
            event_type: e.event_type,
            schema_version: e.schema_version,
            version: e.version,
            payload: e.payload,
        }
    }
}

/// When snapshots are taken and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Take a snapshot whenever the version crosses a multiple of this (0: never).
    pub every: u32,
    /// Snapshots kept per aggregate (older ones are deleted; at least 1).
    pub keep: u32,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self {
            every: 100,
            keep: 2,
        }
    }
}

impl SnapshotPolicy {
    /// True when going from version `before` to `after` crosses a snapshot point.
    pub fn due(&self, before: i64, after: i64) -> bool {
        let every = i64::from(self.every);
        every > 0 && after / every > before / every
    }
}

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Aggregate version the state is at.
    pub version: i64,
    /// The serialized state (JSON text).
    pub state: String,
}

impl EventStore {
    /// Stores a snapshot of `tenant`'s stream of an aggregate at `version` and deletes all but
    /// the newest `keep`.
    #[allow(clippy::too_many_arguments)]
    pub async fn save_snapshot(
        &self,
        tenant: &str,
        aggregate_type: &str,
        aggregate_id: &str,
        version: i64,
        state_version: u32,
        state: &str,
        keep: u32,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO snapshots (aggregate_type, aggregate_id, tenant, version, state_version, state) \
             VALUES ($1, $2, $6, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(version)
        .bind(state_version as i32)
        .bind(state)
        .bind(tenant)
        .execute(self.pool())
        .await?;
        sqlx::query(
            "DELETE FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $4 \
               AND version < ( \
                SELECT MIN(version) FROM ( \
                    SELECT version FROM snapshots \
                    WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $4 \
                    ORDER BY version DESC LIMIT $3) newest)",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(i64::from(keep.max(1)))
        .bind(tenant)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The newest snapshot of `tenant`'s stream of each of `aggregate_ids` written with
    /// `state_version`, at or below `max_version` when given. Snapshots of another state version
    /// are ignored.
    pub async fn latest_snapshots(
        &self,
        tenant: &str,
        aggregate_type: &str,
        aggregate_ids: &[String],
        state_version: u32,
        max_version: Option<i64>,
    ) -> Result<HashMap<String, Snapshot>, sqlx::Error> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT DISTINCT ON (aggregate_id) aggregate_id, version, state FROM snapshots \
             WHERE aggregate_type = $1 AND aggregate_id = ANY($2) AND tenant = $5 \
               AND state_version = $3 AND ($4::bigint IS NULL OR version <= $4) \
             ORDER BY aggregate_id, version DESC",
        )
        .bind(aggregate_type)
        .bind(aggregate_ids)
        .bind(state_version as i32)
        .bind(max_version)
        .bind(tenant)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, version, state)| (id, Snapshot { version, state }))
            .collect())
    }

    /// In one round trip: the newest snapshot of `tenant`'s stream of one aggregate with
    /// `state_version` at or below `max_version`, and the events after it (after 0 without one) up
    /// to `max_version`.
    pub async fn load_for_hydration(
        &self,
        tenant: &str,
        aggregate_type: &str,
        aggregate_id: &str,
        state_version: u32,
        max_version: Option<i64>,
    ) -> Result<(Option<Snapshot>, Vec<StoredEvent>), sqlx::Error> {
        type Row = (
            i64,
            Option<String>,
            Option<Uuid>,
            Option<String>,
            Option<i32>,
            Option<serde_json::Value>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "WITH snap AS ( \
                SELECT version, state FROM snapshots \
                WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $5 \
                  AND state_version = $3 AND ($4::bigint IS NULL OR version <= $4) \
                ORDER BY version DESC LIMIT 1) \
             SELECT version, state, NULL::uuid, NULL::text, NULL::int, NULL::jsonb FROM snap \
             UNION ALL \
             SELECT version, NULL, event_id, event_type, schema_version, payload FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $5 \
               AND version > COALESCE((SELECT version FROM snap), 0) \
               AND ($4::bigint IS NULL OR version <= $4) \
             ORDER BY 2 NULLS LAST, 1",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(state_version as i32)
        .bind(max_version)
        .bind(tenant)
        .fetch_all(self.pool())
        .await?;
        let mut snapshot = None;
        let mut events = Vec::with_capacity(rows.len());
        for (version, state, event_id, event_type, schema_version, payload) in rows {
            match (state, event_id, event_type, schema_version, payload) {
                (Some(state), ..) => snapshot = Some(Snapshot { version, state }),
                (None, Some(event_id), Some(event_type), Some(schema_version), Some(payload)) => {
                    events.push(StoredEvent {
                        event_id,
                        event_type,
                        schema_version,
                        version,
                        payload,
                    })
                }
                _ => return Err(sqlx::Error::Protocol("incomplete event row".into())),
            }
        }
        Ok((snapshot, events))
    }

    /// Snapshots stored for `tenant`'s stream of one aggregate, newest first: (version, state
    /// version).
    pub async fn snapshot_versions(
        &self,
        tenant: &str,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Vec<(i64, i32)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT version, state_version FROM snapshots \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant = $3 ORDER BY version DESC",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(tenant)
        .fetch_all(self.pool())
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_due_when_the_version_crosses_a_multiple() {
        let p = SnapshotPolicy { every: 10, keep: 2 };
        assert!(!p.due(0, 9));
        assert!(p.due(9, 10));
        assert!(p.due(8, 12));
        assert!(!p.due(10, 19));
        assert!(p.due(19, 31));
        assert!(!SnapshotPolicy { every: 0, keep: 1 }.due(0, 1000));
    }
}
