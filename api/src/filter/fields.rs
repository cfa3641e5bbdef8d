//! The JSON field names of a type, read from its `Deserialize` impl, so a
//! filter's selectors can be checked against the type an endpoint answers
//! with (Consul refuses `Selector "Foo" is not valid` before it runs).
//!
//! A derived `Deserialize` for a struct hands its field names (as renamed
//! for JSON) to `Deserializer::deserialize_struct`; [`struct_fields`] asks
//! with a deserializer that only records them.

use serde::de::{self, Deserialize, Visitor};

/// The JSON names of `T`'s fields, or `None` when `T` is not a struct with
/// a derived `Deserialize` (a map, a scalar, a flattened struct).
pub fn struct_fields<T>() -> Option<&'static [&'static str]>
where
    T: for<'de> Deserialize<'de>,
{
    let mut fields = None;
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

struct FieldProbe<'a>(&'a mut Option<&'static [&'static str]>);

/// Why the probe stops: it never produces a value.
#[derive(Debug)]
struct Probed;

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names probed")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        Probed
    }
}

impl<'de> de::Deserializer<'de> for FieldProbe<'_> {
    type Error = Probed;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Probed> {
        *self.0 = Some(fields);
        Err(Probed)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{HealthCheck, ServiceEntry};

    #[test]
    fn derived_structs_give_their_json_names() {
        assert_eq!(
            struct_fields::<ServiceEntry>(),
            Some(&["Node", "Service", "Checks"][..])
        );
        let check = struct_fields::<HealthCheck>().unwrap();
        assert!(check.contains(&"CheckID") && check.contains(&"ServiceTags"));
        assert_eq!(
            struct_fields::<std::collections::BTreeMap<String, String>>(),
            None
        );
        assert_eq!(struct_fields::<String>(), None);
    }
}
