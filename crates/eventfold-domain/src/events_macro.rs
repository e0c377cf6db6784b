//! `domain_events!`: declares an aggregate's event enum from its payload structs, so each event
//! type name is written once (the variant and payload struct share it).

/// Declares `enum $name { Variant(Variant), .. }` serializing to the payload only, with
/// `TYPES`, `type_name()`, `payload_from()` and its `DomainEvent` impl: `category` maps an event
/// to its category (a non-capturing closure), `upcasters` (optional) names the upgrade chain.
#[macro_export]
macro_rules! domain_events {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident for $aggregate:literal {
            $($(#[$vmeta:meta])* $variant:ident),+ $(,)?
        }
        category: $category:expr
        $(, upcasters: $upcasters:expr)? $(,)?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(untagged)]
        $vis enum $name {
            $($(#[$vmeta])* $variant($variant),)+
        }

        impl $name {
            /// The event type names, in declaration order.
            pub const TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];

            /// The past-tense type name of this event.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($variant),)+
                }
            }

            /// Reads a payload of type `event_type`.
            pub fn payload_from(
                event_type: &str,
                payload: ::serde_json::Value,
            ) -> Result<Self, ::serde_json::Error> {
                match event_type {
                    $(stringify!($variant) => ::serde_json::from_value(payload).map(Self::$variant),)+
                    other => Err(<::serde_json::Error as ::serde::de::Error>::custom(format_args!(
                        "unknown {} event type {other}",
                        $aggregate
                    ))),
                }
            }
        }

        impl $crate::DomainEvent for $name {
            fn event_type(&self) -> &'static str {
                self.type_name()
            }

            fn category(&self) -> $crate::EventCategory {
                let category: fn(&Self) -> $crate::EventCategory = $category;
                category(self)
            }

            fn from_payload(
                event_type: &str,
                payload: ::serde_json::Value,
            ) -> Result<Self, ::serde_json::Error> {
                Self::payload_from(event_type, payload)
            }

            fn payload_schemas(
                generator: &mut $crate::__schemars::SchemaGenerator,
            ) -> Vec<(&'static str, $crate::__schemars::Schema)> {
                vec![$((stringify!($variant), generator.subschema_for::<$variant>()),)+]
            }

            $(
                fn upcasters() -> &'static $crate::upcast::Upcasters {
                    $upcasters
                }
            )?
        }
    };
}
