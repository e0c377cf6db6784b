//! A printable description of an aggregate's state machine (seed 003): states, and transitions
//! labelled by command and emitted events.

/// One transition: in `from`, `command` emits `events` and leads to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: &'static str,
    /// Command accepted.
    pub command: &'static str,
    /// Events emitted.
    pub events: &'static [&'static str],
    /// State after.
    pub to: &'static str,
}

/// The states and transitions of one aggregate type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachine {
    /// Aggregate type name.
    pub aggregate_type: &'static str,
    /// Initial state.
    pub initial: &'static str,
    /// Every transition the aggregate allows; anything else is an invalid transition.
    pub transitions: Vec<Transition>,
}

impl StateMachine {
    /// Every state, initial first, in order of appearance.
    pub fn states(&self) -> Vec<&'static str> {
        let mut states = vec![self.initial];
        for t in &self.transitions {
            for s in [t.from, t.to] {
                if !states.contains(&s) {
                    states.push(s);
                }
            }
        }
        states
    }

    /// True when `command` is allowed in `state`.
    pub fn allows(&self, state: &str, command: &str) -> bool {
        self.transitions
            .iter()
            .any(|t| t.from == state && t.command == command)
    }

    /// Mermaid `stateDiagram-v2` text.
    pub fn to_mermaid(&self) -> String {
        let mut out = format!(
            "---\ntitle: {}\n---\nstateDiagram-v2\n    [*] --> {}\n",
            self.aggregate_type, self.initial
        );
        for t in &self.transitions {
            out.push_str(&format!(
                "    {} --> {}: {} / {}\n",
                t.from,
                t.to,
                t.command,
                t.events.join(", ")
            ));
        }
        out
    }

    /// Mermaid `stateDiagram-v2` text with `current` styled as the current state (class
    /// `current`), for one aggregate's diagram.
    pub fn to_mermaid_at(&self, current: &str) -> String {
        let mut out = self.to_mermaid();
        out.push_str("    classDef current fill:#f9d71c,stroke:#333,stroke-width:3px\n");
        out.push_str(&format!("    class {current} current\n"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> StateMachine {
        StateMachine {
            aggregate_type: "Door",
            initial: "Initial",
            transitions: vec![
                Transition {
                    from: "Initial",
                    command: "Install",
                    events: &["DoorInstalled"],
                    to: "Closed",
                },
                Transition {
                    from: "Closed",
                    command: "Open",
                    events: &["DoorOpened"],
                    to: "Open",
                },
                Transition {
                    from: "Open",
                    command: "Close",
                    events: &["DoorClosed"],
                    to: "Closed",
                },
            ],
        }
    }

    #[test]
    fn lists_each_state_once_initial_first() {
        assert_eq!(machine().states(), vec!["Initial", "Closed", "Open"]);
    }

    #[test]
    fn prints_mermaid_with_command_and_events_on_each_edge() {
        let m = machine().to_mermaid();
        assert!(m.contains("stateDiagram-v2"), "{m}");
        assert!(m.contains("[*] --> Initial"), "{m}");
        assert!(m.contains("Closed --> Open: Open / DoorOpened"), "{m}");
    }

    #[test]
    fn marks_the_current_state_with_a_class() {
        let m = machine().to_mermaid_at("Open");
        assert!(m.starts_with(&machine().to_mermaid()), "{m}");
        assert!(m.contains("classDef current "), "{m}");
        assert!(m.ends_with("    class Open current\n"), "{m}");
    }

    #[test]
    fn allows_only_listed_transitions() {
        assert!(machine().allows("Closed", "Open"));
        assert!(!machine().allows("Open", "Open"));
    }
}
