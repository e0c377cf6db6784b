//! Seed 000's discovery pipeline: when a verse's intertextual phase completes, discover its
//! cross-references. `DiscoverCrossReferences` asks a [`CandidateSource`] for candidates and keeps
//! those above `min_confidence` found by one of `discovery_methods`; each becomes a
//! `DiscoverCrossReference` command to its own `CrossReference` aggregate `{verse_id}:{target_ref}`.

use std::collections::BTreeSet;
use std::sync::Arc;

use eventfold_reference::biblos::cross_reference::{DiscoverCrossReference, DiscoveryMethod};
use eventfold_reference::biblos::verse_processing::{Event as VerseEvent, Phase};
use serde::{Deserialize, Serialize};

use crate::process::{Action, ProcessEvent, ProcessManager, Reaction, Step};
use crate::projection::HandlerError;

/// A candidate link from a verse, as a source proposes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Verse the link points to.
    pub target_ref: String,
    /// Kind of connection, e.g. `thematic`.
    pub connection_type: String,
    /// Confidence, `0..=1`.
    pub confidence: f64,
    /// How it was found.
    pub method: DiscoveryMethod,
    /// Cosine similarity of the two verses, `-1..=1`.
    pub semantic_similarity: f64,
}

/// Where candidates come from (an embedding index, a GNN, a keyword matcher, an agent).
pub trait CandidateSource: Send + Sync {
    /// Candidates for the verse `verse_id` with text `verse_text`; the same inputs must give the
    /// same answer (the process manager may ask again after a crash).
    fn candidates(&self, verse_id: &str, verse_text: &str) -> Vec<Candidate>;
}

/// Discover the cross-references of one verse (seed 000's `DiscoverCrossReferences`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoverCrossReferences {
    /// The verse.
    pub verse_id: String,
    /// Its text.
    pub verse_text: String,
    /// Methods whose candidates count.
    pub discovery_methods: Vec<DiscoveryMethod>,
    /// Lowest confidence kept.
    pub min_confidence: f64,
}

impl DiscoverCrossReferences {
    /// One `DiscoverCrossReference` per kept candidate (the first per target), with the id of
    /// the `CrossReference` aggregate it goes to.
    pub fn plan(&self, source: &dyn CandidateSource) -> Vec<(String, DiscoverCrossReference)> {
        let mut targets = BTreeSet::new();
        source
            .candidates(&self.verse_id, &self.verse_text)
            .into_iter()
            .filter(|c| {
                c.confidence >= self.min_confidence
                    && self.discovery_methods.contains(&c.method)
                    && c.target_ref != self.verse_id
                    && targets.insert(c.target_ref.clone())
            })
            .map(|c| {
                (
                    format!("{}:{}", self.verse_id, c.target_ref),
                    DiscoverCrossReference {
                        source_ref: self.verse_id.clone(),
                        target_ref: c.target_ref,
                        connection_type: c.connection_type,
                        initial_confidence: c.confidence,
                        discovery_method: c.method,
                        feature_vector: Vec::new(),
                        semantic_similarity: c.semantic_similarity,
                    },
                )
            })
            .collect()
    }
}

/// A deterministic keyword matcher over a small built-in corpus of verses (King James text,
/// public domain): confidence is the share of the shorter verse's content words the two
/// verses have in common. For tests and the demo; a real source plugs in through
/// [`CandidateSource`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KeywordCandidates;

/// The built-in corpus: verse id and text.
pub const CORPUS: &[(&str, &str)] = &[
    (
        "GEN.1.1",
        "In the beginning God created the heaven and the earth.",
    ),
    (
        "JHN.1.1",
        "In the beginning was the Word, and the Word was with God, and the Word was God.",
    ),
    (
        "JHN.1.3",
        "All things were made by him; and without him was not any thing made that was made.",
    ),
    (
        "PSA.33.6",
        "By the word of the LORD were the heavens made; and all the host of them by the breath of his mouth.",
    ),
    (
        "HEB.11.3",
        "Through faith we understand that the worlds were framed by the word of God, so that things which are seen were not made of things which do appear.",
    ),
    (
        "COL.1.16",
        "For by him were all things created, that are in heaven, and that are in earth, visible and invisible.",
    ),
    (
        "ISA.40.8",
        "The grass withereth, the flower fadeth: but the word of our God shall stand for ever.",
    ),
    (
        "REV.21.1",
        "And I saw a new heaven and a new earth: for the first heaven and the first earth were passed away.",
    ),
];

const STOP_WORDS: &[&str] = &[
    "a", "all", "and", "are", "as", "but", "by", "for", "him", "his", "i", "in", "is", "not", "of",
    "our", "so", "that", "the", "them", "there", "through", "to", "was", "we", "were", "which",
    "with", "without",
];

fn content_words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| !w.is_empty() && !STOP_WORDS.contains(&w.as_str()))
        .map(|w| {
            w.strip_suffix('s')
                .filter(|s| s.len() > 3)
                .map_or(w.clone(), str::to_owned)
        })
        .collect()
}

impl CandidateSource for KeywordCandidates {
    fn candidates(&self, verse_id: &str, verse_text: &str) -> Vec<Candidate> {
        let words = content_words(verse_text);
        if words.is_empty() {
            return Vec::new();
        }
        CORPUS
            .iter()
            .filter(|(id, _)| *id != verse_id)
            .filter_map(|(id, text)| {
                let other = content_words(text);
                let shared = words.intersection(&other).count();
                if shared == 0 {
                    return None;
                }
                let confidence = shared as f64 / words.len().min(other.len()) as f64;
                let union = words.union(&other).count() as f64;
                Some(Candidate {
                    target_ref: (*id).to_owned(),
                    connection_type: "thematic".into(),
                    confidence: (confidence * 1000.0).round() / 1000.0,
                    method: DiscoveryMethod::Keyword,
                    semantic_similarity: (shared as f64 / union * 1000.0).round() / 1000.0,
                })
            })
            .collect()
    }
}

/// `discovery`: the seed 000 discovery pipeline as a process manager, one
/// instance per verse (tenant and verse id).
#[derive(Clone)]
pub struct CrossReferenceDiscovery {
    source: Arc<dyn CandidateSource>,
    methods: Vec<DiscoveryMethod>,
    min_confidence: f64,
}

impl Default for CrossReferenceDiscovery {
    fn default() -> Self {
        Self::new(
            Arc::new(KeywordCandidates),
            DEFAULT_METHODS.to_vec(),
            DEFAULT_MIN_CONFIDENCE,
        )
    }
}

/// Methods kept by default: all.
pub const DEFAULT_METHODS: &[DiscoveryMethod] = &[
    DiscoveryMethod::Embedding,
    DiscoveryMethod::Gnn,
    DiscoveryMethod::Keyword,
    DiscoveryMethod::Agent,
];

/// Confidence kept by default.
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.25;

impl CrossReferenceDiscovery {
    /// Discovery with `source`, keeping `methods` at `min_confidence` or more.
    pub fn new(
        source: Arc<dyn CandidateSource>,
        methods: Vec<DiscoveryMethod>,
        min_confidence: f64,
    ) -> Self {
        Self {
            source,
            methods,
            min_confidence,
        }
    }

    /// The request the completion of `verse_id`'s intertextual phase makes.
    pub fn request(&self, verse_id: &str, verse_text: &str) -> DiscoverCrossReferences {
        DiscoverCrossReferences {
            verse_id: verse_id.to_owned(),
            verse_text: verse_text.to_owned(),
            discovery_methods: self.methods.clone(),
            min_confidence: self.min_confidence,
        }
    }

    /// The candidate source.
    pub fn source(&self) -> &dyn CandidateSource {
        &*self.source
    }
}

/// One verse's discovery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryState {
    /// The verse's text, from its latest `VerseProcessingStarted`.
    pub verse_text: Option<String>,
    /// Cross-references asked for, by target.
    pub requested: Vec<String>,
    /// True once discovery ran.
    pub discovered: bool,
    /// Steps the command service refused, as `target: code`.
    pub refused: Vec<String>,
}

/// The verse processing aggregate type.
const VERSE_PROCESSING: &str = "VerseProcessing";

impl ProcessManager for CrossReferenceDiscovery {
    type State = DiscoveryState;

    fn name(&self) -> &'static str {
        "discovery"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[VERSE_PROCESSING]
    }

    fn instance(&self, event: &ProcessEvent) -> Option<String> {
        (event.aggregate_type == VERSE_PROCESSING).then(|| event.aggregate_id.clone())
    }

    fn react(
        &self,
        mut state: DiscoveryState,
        event: &ProcessEvent,
    ) -> Result<Reaction<DiscoveryState>, HandlerError> {
        match event.domain::<VerseEvent>()? {
            VerseEvent::VerseProcessingStarted(e) => {
                state.verse_text = Some(e.text_content);
                Ok(Reaction::keep(state))
            }
            VerseEvent::VerseProcessingCompleted(e)
                if e.phase == Phase::Intertextual && !state.discovered =>
            {
                let text = state.verse_text.clone().unwrap_or_default();
                let plan = self.request(&e.verse_id, &text).plan(&*self.source);
                let mut actions = Vec::with_capacity(plan.len());
                for (aggregate_id, command) in plan {
                    state.requested.push(command.target_ref.clone());
                    actions.push(Action::Send(Step::new(
                        format!("discover:{}", command.target_ref),
                        "CrossReference",
                        aggregate_id,
                        "DiscoverCrossReference",
                        &command,
                    )?));
                }
                state.discovered = true;
                Ok(Reaction::with(state, actions).finish())
            }
            _ => Ok(Reaction::keep(state)),
        }
    }

    fn on_failure(
        &self,
        mut state: DiscoveryState,
        failure: &crate::process::StepFailure,
    ) -> Result<Reaction<DiscoveryState>, HandlerError> {
        // A refused discovery (e.g. the cross-reference exists already under another discovery)
        // is recorded; nothing else depends on it.
        let target = failure.step.trim_start_matches("discover:");
        state.refused.push(format!("{target}: {}", failure.code));
        Ok(Reaction::keep(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::given_when;
    use serde_json::json;

    fn event(event_type: &str, version: i64, payload: serde_json::Value) -> ProcessEvent {
        crate::process::test_event(VERSE_PROCESSING, "GEN.1.1", event_type, version, payload)
    }

    fn started(phase: &str) -> ProcessEvent {
        event(
            "VerseProcessingStarted",
            1,
            json!({"verse_id": "GEN.1.1", "book": "GEN", "chapter": 1, "verse": 1,
                   "text_content": CORPUS[0].1, "phase": phase, "attempt": 1}),
        )
    }

    fn completed(phase: &str) -> ProcessEvent {
        event(
            "VerseProcessingCompleted",
            2,
            json!({"verse_id": "GEN.1.1", "phase": phase, "duration_ms": 5,
                   "agent_results": {}, "quality_score": 0.9}),
        )
    }

    #[test]
    fn given_an_intertextual_run_when_it_completes_then_one_discovery_per_candidate_above_the_threshold()
     {
        let pm = CrossReferenceDiscovery::default();
        let r = given_when(&pm, &[started("intertextual")], &completed("intertextual")).unwrap();
        let expected = pm.request("GEN.1.1", CORPUS[0].1).plan(&KeywordCandidates);
        assert!(expected.len() >= 2, "{expected:?}");
        assert_eq!(r.actions.len(), expected.len());
        for (action, (id, command)) in r.actions.iter().zip(&expected) {
            let Action::Send(step) = action else {
                panic!("{action:?}")
            };
            assert_eq!(step.aggregate_type, "CrossReference");
            assert_eq!(&step.aggregate_id, id);
            assert_eq!(step.command, "DiscoverCrossReference");
            assert_eq!(step.body, serde_json::to_value(command).unwrap());
            assert!(command.initial_confidence >= DEFAULT_MIN_CONFIDENCE);
        }
        assert!(r.finished && r.state.discovered);
    }

    #[test]
    fn given_another_phase_when_it_completes_then_nothing_is_sent() {
        let pm = CrossReferenceDiscovery::default();
        let r = given_when(&pm, &[started("linguistic")], &completed("linguistic")).unwrap();
        assert!(r.actions.is_empty());
        assert!(!r.state.discovered);
    }

    #[test]
    fn given_a_discovery_when_the_phase_completes_again_then_nothing_more_is_sent() {
        let pm = CrossReferenceDiscovery::default();
        let given = [started("intertextual"), completed("intertextual")];
        let r = given_when(&pm, &given, &completed("intertextual")).unwrap();
        assert!(r.actions.is_empty());
    }

    #[test]
    fn the_plan_keeps_methods_and_threshold_and_one_candidate_per_target() {
        let request = DiscoverCrossReferences {
            verse_id: "GEN.1.1".into(),
            verse_text: CORPUS[0].1.into(),
            discovery_methods: vec![DiscoveryMethod::Keyword],
            min_confidence: 0.0,
        };
        let all = request.plan(&KeywordCandidates);
        assert!(
            all.iter()
                .all(|(id, c)| id == &format!("GEN.1.1:{}", c.target_ref))
        );
        assert!(!all.iter().any(|(_, c)| c.target_ref == "GEN.1.1"));
        let strict = DiscoverCrossReferences {
            min_confidence: 0.99,
            ..request.clone()
        };
        assert!(strict.plan(&KeywordCandidates).len() < all.len());
        let other_method = DiscoverCrossReferences {
            discovery_methods: vec![DiscoveryMethod::Gnn],
            ..request
        };
        assert!(other_method.plan(&KeywordCandidates).is_empty());
    }
}
