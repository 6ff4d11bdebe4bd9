//! The one place an enum's names are written: the command line parses them (and
//! lists them in `--help`), `config.json` and the JSON reports store them, the Python
//! binding takes them, and messages print them, all from the list given to
//! [`named_enum!`].

/// Gives an enum its names: `name()`, `NAMES`, `FromStr`, `Display`, the conversions
/// that serde's `#[serde(into = "&'static str", try_from = "String")]` uses, and with
/// the `cli` feature clap's `ValueEnum`.
macro_rules! named_enum {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant's name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The name the command line, the JSON files and Python use.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(format!("'{text}' is not one of {}", $ty::NAMES.join(", "))),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl From<$ty> for &'static str {
            fn from(value: $ty) -> Self {
                value.name()
            }
        }

        impl TryFrom<String> for $ty {
            type Error = String;

            fn try_from(text: String) -> Result<Self, String> {
                text.parse()
            }
        }

        #[cfg(feature = "cli")]
        impl clap::ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($ty::$variant),+]
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.name()))
            }
        }
    };
}

pub(crate) use named_enum;

#[cfg(test)]
mod tests {
    use crate::model::Cell;
    use crate::rescore::nbest::LogBase;

    #[test]
    fn names_parse_back_and_serialize_as_themselves() {
        for name in Cell::NAMES {
            let cell: Cell = name.parse().unwrap();
            assert_eq!(cell.name(), *name);
            assert_eq!(serde_json::to_string(&cell).unwrap(), format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<Cell>(&format!("\"{name}\"")).unwrap(),
                cell
            );
        }
        assert_eq!("10".parse::<LogBase>(), Ok(LogBase::Ten));
        assert_eq!(
            "elephant".parse::<Cell>(),
            Err("'elephant' is not one of rnn, gru, lstm".to_string())
        );
        assert!(serde_json::from_str::<Cell>("\"LSTM\"").is_err());
    }
}
