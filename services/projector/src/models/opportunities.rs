//! Read model `opportunities` (seed 002, AI Opportunity Browser): tables `opportunities` and
//! `users` at the latest schema version of their events (v1 payloads arrive upcast), queried by
//! `GET /v1/read/opportunities` ([`crate::read_api`]).

use eventfold_domain::Aggregate;
use eventfold_reference::opportunity::opportunity::Event as OpportunityEvent;
use eventfold_reference::opportunity::user::Event as UserEvent;
use serde_json::{Value, json};

use crate::projection::{HandlerError, ProjectedEvent, Projection, Store, Write};

/// The seed 002 tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opportunities;

const SETUP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {schema}.opportunities (
        aggregate_id          text NOT NULL,
        tenant                text NOT NULL,
        opportunity_id        text NOT NULL,
        title                 text NOT NULL,
        description           text NOT NULL,
        ai_solution_type      text NOT NULL,
        ai_solution_category  text NOT NULL,
        market_size_estimate  bigint NOT NULL,
        confidence_score      float8 NOT NULL,
        status                text NOT NULL,
        validation_count      integer NOT NULL DEFAULT 0,
        validation_score_sum  float8 NOT NULL DEFAULT 0,
        last_validator_id     text,
        archived_reason       text,
        created_at            timestamptz NOT NULL,
        updated_at            timestamptz NOT NULL,
        last_version          bigint NOT NULL,
        PRIMARY KEY (tenant, aggregate_id)
    ) WITH (fillfactor = 70)",
    "CREATE INDEX IF NOT EXISTS opportunities_type ON {schema}.opportunities (ai_solution_type, created_at)",
    "CREATE INDEX IF NOT EXISTS opportunities_created ON {schema}.opportunities (created_at, aggregate_id)",
    "CREATE INDEX IF NOT EXISTS opportunities_status ON {schema}.opportunities (status)",
    "CREATE TABLE IF NOT EXISTS {schema}.users (
        aggregate_id           text NOT NULL,
        tenant                 text NOT NULL,
        user_id                text NOT NULL,
        email                  text NOT NULL,
        display_name           text,
        expertise_domains      jsonb NOT NULL,
        user_preferences       jsonb NOT NULL,
        notification_settings  jsonb NOT NULL,
        active                 boolean NOT NULL,
        deactivation_reason    text,
        registered_at          timestamptz NOT NULL,
        updated_at             timestamptz NOT NULL,
        last_version           bigint NOT NULL,
        PRIMARY KEY (tenant, aggregate_id)
    ) WITH (fillfactor = 70)",
    // Row-level security for the read API's role: one tenant's rows, named per request by
    // `eventfold.tenant` through `eventfold_request_tenant()` (an unset or emptied tenant is an
    // error, never every row). The projectors write as the tables' owner, which the policies do
    // not filter.
    "GRANT USAGE ON SCHEMA {schema} TO eventfold_reader",
    "GRANT SELECT ON {schema}.opportunities, {schema}.users TO eventfold_reader",
    "ALTER TABLE {schema}.opportunities ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE {schema}.users ENABLE ROW LEVEL SECURITY",
    "DO $$ BEGIN \
     IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = '{schema}' \
       AND tablename = 'opportunities' AND policyname = 'tenant_rows') THEN \
       CREATE POLICY tenant_rows ON {schema}.opportunities FOR SELECT TO eventfold_reader \
         USING (tenant = eventfold_request_tenant()); \
     ELSIF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = '{schema}' \
       AND tablename = 'opportunities' AND policyname = 'tenant_rows' \
       AND qual LIKE '%eventfold_request_tenant%') THEN \
       ALTER POLICY tenant_rows ON {schema}.opportunities \
         USING (tenant = eventfold_request_tenant()); \
     END IF; \
     IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = '{schema}' \
       AND tablename = 'users' AND policyname = 'tenant_rows') THEN \
       CREATE POLICY tenant_rows ON {schema}.users FOR SELECT TO eventfold_reader \
         USING (tenant = eventfold_request_tenant()); \
     ELSIF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = '{schema}' \
       AND tablename = 'users' AND policyname = 'tenant_rows' \
       AND qual LIKE '%eventfold_request_tenant%') THEN \
       ALTER POLICY tenant_rows ON {schema}.users \
         USING (tenant = eventfold_request_tenant()); \
     END IF; END $$",
];

/// Re-keys `{table}` of a generation created before streams were per tenant (keyed by the id
/// alone) by `(tenant, aggregate_id)`.
const REKEY: &str = "DO $$ BEGIN \
     IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
       JOIN pg_namespace n ON n.oid = c.relnamespace \
       WHERE n.nspname = '{schema}' AND c.relname = '{table}' AND i.indisprimary \
         AND i.indnatts = 1) THEN \
       ALTER TABLE {schema}.{table} DROP CONSTRAINT {table}_pkey; \
       ALTER TABLE {schema}.{table} ADD PRIMARY KEY (tenant, aggregate_id); \
     END IF; END $$";

const OPP_CREATED: &str = "INSERT INTO {schema}.opportunities (aggregate_id, tenant, opportunity_id, \
       title, description, ai_solution_type, ai_solution_category, market_size_estimate, \
       confidence_score, status, created_at, updated_at, last_version) \
     SELECT r.id, r.tenant, r.opportunity_id, r.title, r.description, r.ai_solution_type, \
       r.ai_solution_category, r.market_size_estimate, r.confidence_score, 'discovered', r.at, r.at, \
       r.version \
     FROM jsonb_to_recordset($1) AS r(id text, tenant text, opportunity_id text, title text, \
       description text, ai_solution_type text, ai_solution_category text, \
       market_size_estimate bigint, confidence_score float8, at timestamptz, version bigint) \
     ON CONFLICT (tenant, aggregate_id) DO NOTHING";

const OPP_UPDATED: &str = "UPDATE {schema}.opportunities o SET \
       title = coalesce(r.title, o.title), description = coalesce(r.description, o.description), \
       market_size_estimate = coalesce(r.market_size_estimate, o.market_size_estimate), \
       confidence_score = coalesce(r.confidence_score, o.confidence_score), \
       updated_at = r.at, last_version = r.version \
     FROM jsonb_to_recordset($1) AS r(id text, tenant text, title text, description text, \
       market_size_estimate bigint, confidence_score float8, at timestamptz, version bigint) \
     WHERE o.tenant = r.tenant AND o.aggregate_id = r.id AND o.last_version < r.version";

const OPP_VALIDATED: &str = "UPDATE {schema}.opportunities o SET status = 'validated', \
       validation_count = o.validation_count + 1, \
       validation_score_sum = o.validation_score_sum + r.score, last_validator_id = r.validator_id, \
       updated_at = r.at, last_version = r.version \
     FROM jsonb_to_recordset($1) AS r(id text, tenant text, score float8, validator_id text, at timestamptz, \
       version bigint) \
     WHERE o.tenant = r.tenant AND o.aggregate_id = r.id AND o.last_version < r.version";

const OPP_ARCHIVED: &str = "UPDATE {schema}.opportunities o SET status = 'archived', \
       archived_reason = r.reason, updated_at = r.at, last_version = r.version \
     FROM jsonb_to_recordset($1) AS r(id text, tenant text, reason text, at timestamptz, version bigint) \
     WHERE o.tenant = r.tenant AND o.aggregate_id = r.id AND o.last_version < r.version";

const USER_REGISTERED: &str = "INSERT INTO {schema}.users (aggregate_id, tenant, user_id, email, \
       display_name, expertise_domains, user_preferences, notification_settings, active, \
       registered_at, updated_at, last_version) \
     SELECT r.id, r.tenant, r.user_id, r.email, r.display_name, r.expertise_domains, \
       r.user_preferences, r.notification_settings, true, r.at, r.at, r.version \
     FROM jsonb_to_recordset($1) AS r(id text, tenant text, user_id text, email text, \
       display_name text, expertise_domains jsonb, user_preferences jsonb, \
       notification_settings jsonb, at timestamptz, version bigint) \
     ON CONFLICT (tenant, aggregate_id) DO NOTHING";

const USER_UPDATED: &str = "UPDATE {schema}.users u SET \
       display_name = coalesce(r.display_name, u.display_name), \
       expertise_domains = coalesce(r.expertise_domains, u.expertise_domains), \
       user_preferences = coalesce(r.user_preferences, u.user_preferences), \
       notification_settings = coalesce(r.notification_settings, u.notification_settings), \
       updated_at = r.at, last_version = r.version \
     FROM jsonb_to_recordset($1) AS r(id text, tenant text, display_name text, expertise_domains jsonb, \
       user_preferences jsonb, notification_settings jsonb, at timestamptz, version bigint) \
     WHERE u.tenant = r.tenant AND u.aggregate_id = r.id AND u.last_version < r.version";

const USER_DEACTIVATED: &str = "UPDATE {schema}.users u SET active = false, \
       deactivation_reason = r.reason, updated_at = r.at, last_version = r.version \
     FROM jsonb_to_recordset($1) AS r(id text, tenant text, reason text, at timestamptz, version bigint) \
     WHERE u.tenant = r.tenant AND u.aggregate_id = r.id AND u.last_version < r.version";

/// The envelope fields every row carries.
fn base(e: &ProjectedEvent) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(e.envelope.aggregate_id));
    m.insert("tenant".into(), json!(e.envelope.tenant));
    m.insert("at".into(), json!(e.envelope.occurred_at));
    m.insert("version".into(), json!(e.envelope.aggregate_version));
    m
}

fn row(e: &ProjectedEvent, fields: Value) -> Value {
    let mut m = base(e);
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Value::Object(m)
}

impl Projection for Opportunities {
    fn name(&self) -> &'static str {
        "opportunities"
    }

    fn store(&self) -> Store {
        Store::Postgres
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[
            <eventfold_reference::Opportunity as Aggregate>::TYPE,
            <eventfold_reference::User as Aggregate>::TYPE,
        ]
    }

    fn setup(&self) -> Vec<String> {
        SETUP
            .iter()
            .map(|s| s.to_string())
            .chain(["opportunities", "users"].map(|t| REKEY.replace("{table}", t)))
            .collect()
    }

    fn reset(&self) -> Vec<String> {
        vec!["TRUNCATE {schema}.opportunities, {schema}.users".into()]
    }

    fn statement(&self, key: &str) -> Option<&'static str> {
        Some(match key {
            "opportunity_created" => OPP_CREATED,
            "opportunity_updated" => OPP_UPDATED,
            "opportunity_validated" => OPP_VALIDATED,
            "opportunity_archived" => OPP_ARCHIVED,
            "user_registered" => USER_REGISTERED,
            "user_updated" => USER_UPDATED,
            "user_deactivated" => USER_DEACTIVATED,
            _ => return None,
        })
    }

    fn writes(&self, e: &ProjectedEvent) -> Result<Vec<Write>, HandlerError> {
        let w = match e.envelope.aggregate_type.as_str() {
            "Opportunity" => match e.domain::<OpportunityEvent>()? {
                OpportunityEvent::OpportunityCreated(c) => Write::new(
                    "opportunity_created",
                    row(
                        e,
                        json!({
                            "opportunity_id": c.opportunity_id, "title": c.title,
                            "description": c.description, "ai_solution_type": c.ai_solution_type,
                            "ai_solution_category": c.ai_solution_category,
                            "market_size_estimate": c.market_size_estimate,
                            "confidence_score": c.confidence_score,
                        }),
                    ),
                ),
                OpportunityEvent::OpportunityUpdated(u) => Write::new(
                    "opportunity_updated",
                    row(
                        e,
                        json!({
                            "title": u.title, "description": u.description,
                            "market_size_estimate": u.market_size_estimate,
                            "confidence_score": u.confidence_score,
                        }),
                    ),
                ),
                OpportunityEvent::OpportunityValidated(v) => Write::new(
                    "opportunity_validated",
                    row(e, json!({"score": v.score, "validator_id": v.validator_id})),
                ),
                OpportunityEvent::OpportunityArchived(a) => {
                    Write::new("opportunity_archived", row(e, json!({"reason": a.reason})))
                }
            },
            "User" => match e.domain::<UserEvent>()? {
                UserEvent::UserRegistered(r) => Write::new(
                    "user_registered",
                    row(
                        e,
                        json!({
                            "user_id": r.user_id, "email": r.email, "display_name": r.display_name,
                            "expertise_domains": r.expertise_domains,
                            "user_preferences": r.user_preferences,
                            "notification_settings": r.notification_settings,
                        }),
                    ),
                ),
                UserEvent::UserProfileUpdated(u) => Write::new(
                    "user_updated",
                    row(
                        e,
                        json!({
                            "display_name": u.display_name, "expertise_domains": u.expertise_domains,
                            "user_preferences": u.user_preferences,
                            "notification_settings": u.notification_settings,
                        }),
                    ),
                ),
                UserEvent::UserDeactivated(d) => {
                    Write::new("user_deactivated", row(e, json!({"reason": d.reason})))
                }
            },
            _ => return Ok(vec![]),
        };
        Ok(vec![w])
    }

    fn dump(&self) -> Vec<&'static str> {
        vec![
            "SELECT o.tenant, row_to_json(o)::text AS row FROM {schema}.opportunities o",
            "SELECT u.tenant, row_to_json(u)::text AS row FROM {schema}.users u",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventfold_kafka::Envelope;

    fn event(t: &str, event_type: &str, version: i64, payload: Value) -> ProjectedEvent {
        ProjectedEvent {
            envelope: Envelope {
                event_type: event_type.into(),
                aggregate_type: t.into(),
                aggregate_id: "a-1".into(),
                aggregate_version: version,
                tenant: "acme".into(),
                occurred_at: "2026-11-24T00:00:00+00:00".into(),
                ..Envelope::default()
            },
            payload,
        }
    }

    #[test]
    fn a_created_opportunity_becomes_one_insert_row_with_the_envelope() {
        let e = event(
            "Opportunity",
            "OpportunityCreated",
            1,
            json!({"opportunity_id": "o-1", "title": "T", "description": "d",
                "ai_solution_type": "nlp",
                "ai_solution_category": "natural_language_processing",
                "market_size_estimate": 10, "confidence_score": 0.7}),
        );
        let w = Opportunities.writes(&e).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].statement, "opportunity_created");
        assert_eq!(w[0].row["id"], "a-1");
        assert_eq!(w[0].row["tenant"], "acme");
        assert_eq!(w[0].row["version"], 1);
        assert_eq!(w[0].row["ai_solution_type"], "nlp");
        assert!(Opportunities.statement(w[0].statement).is_some());
    }

    #[test]
    fn every_write_names_a_statement_and_a_bad_payload_is_refused() {
        let e = event("User", "UserDeactivated", 2, json!({"reason": null}));
        let w = Opportunities.writes(&e).unwrap();
        assert_eq!(w[0].statement, "user_deactivated");
        assert!(Opportunities.statement("nope").is_none());
        let bad = event("Opportunity", "OpportunityCreated", 1, json!({"title": 5}));
        assert!(Opportunities.writes(&bad).is_err());
    }
}
