//! Checks every reference aggregate must pass, and proptest strategies they share: the state
//! machine agrees with `decide`, and events survive serialization and replay.

use std::collections::{BTreeSet, HashSet};

use eventfold_domain::{Aggregate, DomainError, DomainEvent, StateMachine};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Position of the transition `from --command--> to` emitting `events`, if the machine lists it.
fn listed(
    machine: &StateMachine,
    from: &str,
    command: &str,
    events: &[&str],
    to: &str,
) -> Option<usize> {
    machine
        .transitions
        .iter()
        .position(|t| t.from == from && t.command == command && t.to == to && t.events == events)
}

/// Explores every state reachable with up to `depth` of the `samples` and asserts, in each:
/// a command is allowed by `state_machine()` exactly when `decide` does not answer
/// `InvalidTransition` (naming that state and command); an accepted command follows a listed
/// transition (same events, same target state); every listed state and transition is reached.
#[track_caller]
pub(crate) fn assert_state_machine_agrees_with_decide<A>(samples: &[A::Command], depth: usize)
where
    A: Aggregate,
{
    let machine = A::state_machine();
    let sampled: BTreeSet<&str> = samples.iter().map(A::command_name).collect();
    let named: BTreeSet<&str> = A::command_names().iter().copied().collect();
    assert_eq!(sampled, named, "samples must cover every command");

    let mut seen_states = BTreeSet::new();
    let mut seen_transitions = BTreeSet::new();
    let mut visited = HashSet::new();
    let mut frontier = vec![A::default()];
    for _ in 0..=depth {
        let mut next = Vec::new();
        for state in frontier {
            let key = serde_json::to_string(&state).expect("state serializes");
            if !visited.insert(key) {
                continue;
            }
            let from = state.state_name();
            seen_states.insert(from);
            for command in samples {
                let name = A::command_name(command);
                let allowed = machine.allows(from, name);
                match state.decide(command) {
                    Err(DomainError::InvalidTransition {
                        state: s,
                        command: c,
                    }) => {
                        assert!(!allowed, "{name} is listed in {from} but refused");
                        assert_eq!((s, c), (from, name), "error names state and command");
                    }
                    Err(e) => assert!(allowed, "{name} in {from}: rule error {e:?}"),
                    Ok(events) => {
                        assert!(allowed, "{name} accepted in {from} but not listed");
                        let types: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
                        let after = events.iter().fold(state.clone(), |s, e| s.apply(e));
                        let to = after.state_name();
                        let i = listed(&machine, from, name, &types, to).unwrap_or_else(|| {
                            panic!("{from} --{name} / {types:?}--> {to} is not listed")
                        });
                        seen_transitions.insert(i);
                        seen_states.insert(to);
                        next.push(after);
                    }
                }
            }
        }
        frontier = next;
    }
    for s in machine.states() {
        assert!(seen_states.contains(s), "state {s} never reached");
    }
    for (i, t) in machine.transitions.iter().enumerate() {
        assert!(
            seen_transitions.contains(&i),
            "transition never taken: {t:?}"
        );
    }
}

/// Decides `commands` in order from the initial state (refused ones change nothing) and checks:
/// every outcome agrees with the state machine; replaying the emitted events from scratch gives
/// the decided state; every event survives payload → JSON text → `from_payload` (and the plain
/// `Deserialize`) unchanged, and replaying those gives the same state; the state survives a
/// snapshot round trip. Returns how many commands were accepted.
pub(crate) fn check_replay_and_round_trip<A>(
    commands: &[A::Command],
) -> Result<usize, TestCaseError>
where
    A: Aggregate + PartialEq,
    A::Event: PartialEq,
{
    let machine = A::state_machine();
    let mut state = A::default();
    let mut events = Vec::new();
    let mut accepted = 0;
    for command in commands {
        let from = state.state_name();
        let name = A::command_name(command);
        match state.decide(command) {
            Ok(new) => {
                accepted += 1;
                let types: Vec<&str> = new.iter().map(|e| e.event_type()).collect();
                state = new.iter().fold(state, |s, e| s.apply(e));
                prop_assert!(
                    listed(&machine, from, name, &types, state.state_name()).is_some(),
                    "{} --{} / {:?}--> {} is not listed",
                    from,
                    name,
                    types,
                    state.state_name()
                );
                events.extend(new);
            }
            Err(DomainError::InvalidTransition { .. }) => {
                prop_assert!(!machine.allows(from, name), "{} refused in {}", name, from);
            }
            Err(DomainError::Rule { .. }) => {
                prop_assert!(
                    machine.allows(from, name),
                    "{} rule-checked in {}",
                    name,
                    from
                );
            }
        }
    }
    prop_assert_eq!(&A::replay(&events), &state);

    let mut stored = Vec::with_capacity(events.len());
    for event in &events {
        let text = serde_json::to_string(event).map_err(fail)?;
        let payload: Value = serde_json::from_str(&text).map_err(fail)?;
        prop_assert!(payload.is_object(), "payload is a JSON object: {}", text);
        let read = A::Event::from_payload(event.event_type(), payload.clone()).map_err(fail)?;
        prop_assert_eq!(&read, event);
        let guessed: A::Event = serde_json::from_value(payload).map_err(fail)?;
        prop_assert_eq!(&guessed, event);
        stored.push(read);
    }
    prop_assert_eq!(&A::replay(&stored), &state);

    let snapshot = serde_json::to_string(&state).map_err(fail)?;
    prop_assert_eq!(&serde_json::from_str::<A>(&snapshot).map_err(fail)?, &state);
    Ok(accepted)
}

fn fail(e: serde_json::Error) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Characters that stress storage and JSON: accents (NFC and NFD), Hebrew and Arabic (RTL),
/// CJK, emoji with a joiner, SQL and Cypher metacharacters.
const INTERESTING: &[char] = &[
    'a', 'Z', '0', ' ', '.', '-', '\'', '"', '\\', '/', '{', '}', '%', ';', '$', 'é', 'e',
    '\u{301}', 'ß', 'א', 'ש', 'ع', '中', '語', '🙂', '\u{200d}', '👩', '\u{200f}', 'λ', 'Ω',
];

/// One printable character: mostly [`INTERESTING`] ones, sometimes any non-control character.
fn printable() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(INTERESTING),
        1 => any::<char>().prop_filter("printable", |c| !c.is_control()),
    ]
}

/// Free text: printable Unicode (emoji, RTL, combining marks), never a control character.
pub(crate) fn text() -> impl Strategy<Value = String> {
    vec(printable(), 0..24).prop_map(String::from_iter)
}

/// Free text that starts with a letter, so it is never blank.
pub(crate) fn nonblank_text() -> impl Strategy<Value = String> {
    (prop::sample::select(&['w', 'É', 'ש', '中'][..]), text())
        .prop_map(|(first, rest)| format!("{first}{rest}"))
}

/// A name-like value: short, non-empty, sometimes non-ASCII.
pub(crate) fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z][a-z0-9_.]{0,15}",
        1 => vec(prop::sample::select(&['é', 'ש', '中', '🙂', 'k', '7'][..]), 1..8)
            .prop_map(String::from_iter),
    ]
}

/// Open JSON objects of a few levels, with every kind of value.
pub(crate) fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e12..1e12f64).prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(name(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    btree_map(name(), value, 0..4).prop_map(|m| m.into_iter().collect())
}
