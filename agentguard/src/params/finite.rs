//! Refusing NaN and ±infinity at intake. JSON has no such numbers, and serde_json writes them as `null`: a params
//! snapshot would show `null` for a value that is not, and a change from `1.5` to `inf` after approval would not
//! change the digest. So arguments are walked before they are frozen, and a non-finite float is an error that names
//! where it is.

use std::fmt;

use serde::ser::{self, Serialize};

/// Checks that `value` serializes without a NaN or infinite float; the error says where one is (`amount`,
/// `items[2].price`).
pub(crate) fn check_finite<T: Serialize + ?Sized>(value: &T) -> Result<(), NonFinite> {
    check_finite_at(value, "")
}

/// [`check_finite`] for a value that is itself named `root` (an argument), so the error names it.
pub(crate) fn check_finite_at<T: Serialize + ?Sized>(value: &T, root: &str) -> Result<(), NonFinite> {
    value.serialize(Finite { path: root.to_owned() })
}

/// A NaN or infinite float where a number was expected.
#[derive(Debug)]
pub(crate) struct NonFinite(String);

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NonFinite {}

impl ser::Error for NonFinite {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        NonFinite(msg.to_string())
    }
}

/// A serializer that produces nothing: it only looks at every float, remembering the path it is at.
struct Finite {
    path: String,
}

impl Finite {
    fn float(&self, v: f64) -> Result<(), NonFinite> {
        if v.is_finite() {
            return Ok(());
        }
        let at = if self.path.is_empty() { "the value" } else { &self.path };
        Err(NonFinite(format!(
            "{at} is {v}, which JSON cannot hold (it would be recorded as null): send a finite number"
        )))
    }

    fn field(&self, key: &str) -> Finite {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Finite { path }
    }

    fn item(&self, i: usize) -> Finite {
        Finite {
            path: format!("{}[{i}]", self.path),
        }
    }
}

/// A sequence, tuple or struct in progress: counts items, names fields.
struct Compound {
    at: Finite,
    next: usize,
}

impl Compound {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NonFinite> {
        let at = self.at.item(self.next);
        self.next += 1;
        value.serialize(at)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), NonFinite> {
        value.serialize(self.at.field(key))
    }
}

macro_rules! ok_scalars {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), NonFinite> { Ok(()) })*
    };
}

impl ser::Serializer for Finite {
    type Ok = ();
    type Error = NonFinite;
    type SerializeSeq = Compound;
    type SerializeTuple = Compound;
    type SerializeTupleStruct = Compound;
    type SerializeTupleVariant = Compound;
    type SerializeMap = Compound;
    type SerializeStruct = Compound;
    type SerializeStructVariant = Compound;

    ok_scalars!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, v: f32) -> Result<(), NonFinite> {
        self.float(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), NonFinite> {
        self.float(v)
    }
    fn serialize_none(self) -> Result<(), NonFinite> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), NonFinite> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), NonFinite> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), NonFinite> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), NonFinite> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), NonFinite> {
        value.serialize(self.field(variant))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound, NonFinite> {
        Ok(Compound { at: self, next: 0 })
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound, NonFinite> {
        Ok(Compound { at: self, next: 0 })
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound, NonFinite> {
        Ok(Compound { at: self, next: 0 })
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound, NonFinite> {
        Ok(Compound {
            at: self.field(variant),
            next: 0,
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound, NonFinite> {
        Ok(Compound { at: self, next: 0 })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound, NonFinite> {
        Ok(Compound { at: self, next: 0 })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound, NonFinite> {
        Ok(Compound {
            at: self.field(variant),
            next: 0,
        })
    }
}

impl ser::SerializeSeq for Compound {
    type Ok = ();
    type Error = NonFinite;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NonFinite> {
        self.item(value)
    }
    fn end(self) -> Result<(), NonFinite> {
        Ok(())
    }
}

impl ser::SerializeTuple for Compound {
    type Ok = ();
    type Error = NonFinite;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NonFinite> {
        self.item(value)
    }
    fn end(self) -> Result<(), NonFinite> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Compound {
    type Ok = ();
    type Error = NonFinite;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NonFinite> {
        self.item(value)
    }
    fn end(self) -> Result<(), NonFinite> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Compound {
    type Ok = ();
    type Error = NonFinite;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NonFinite> {
        self.item(value)
    }
    fn end(self) -> Result<(), NonFinite> {
        Ok(())
    }
}

impl ser::SerializeMap for Compound {
    type Ok = ();
    type Error = NonFinite;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), NonFinite> {
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NonFinite> {
        // Map keys are not tracked (they may be any type): the path names the map and the entry's position.
        self.item(value)
    }
    fn end(self) -> Result<(), NonFinite> {
        Ok(())
    }
}

impl ser::SerializeStruct for Compound {
    type Ok = ();
    type Error = NonFinite;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), NonFinite> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), NonFinite> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound {
    type Ok = ();
    type Error = NonFinite;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), NonFinite> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), NonFinite> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize)]
    struct Refund {
        amount: f64,
        items: Vec<Item>,
    }

    #[derive(serde::Serialize)]
    struct Item {
        price: f32,
    }

    #[test]
    fn nan_and_infinities_are_refused_with_their_path() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = check_finite(&Refund {
                amount: bad,
                items: vec![],
            })
            .unwrap_err();
            assert!(e.to_string().starts_with("amount is "), "{e}");
        }
        let e = check_finite(&Refund {
            amount: 1.0,
            items: vec![Item { price: 2.0 }, Item { price: f32::NAN }],
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("items[1].price is NaN"), "{e}");
        let map: BTreeMap<&str, f64> = [("a", 1.0), ("b", f64::INFINITY)].into();
        assert!(check_finite(&map).is_err());
        assert!(check_finite(&Some(f64::NAN)).is_err());
        assert!(check_finite(&(1u8, "x", -f64::INFINITY)).is_err());
    }

    #[test]
    fn finite_values_pass() {
        let ok = Refund {
            amount: -0.0,
            items: vec![
                Item { price: f32::MAX },
                Item {
                    price: f32::MIN_POSITIVE,
                },
            ],
        };
        check_finite(&ok).unwrap();
        check_finite(&serde_json::json!({"a": [1, 2.5, null, "x"], "b": {"c": 1e308}})).unwrap();
        check_finite(&f64::MAX).unwrap();
    }
}
