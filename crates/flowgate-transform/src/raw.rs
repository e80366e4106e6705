//! The flow log record as it is on the wire, borrowed from the read buffer.
//!
//! Key order varies between writers; serde does not care. Unknown keys are ignored so
//! that new fields Azure adds do not break parsing. Strings are `Cow`: borrowed unless
//! they contain JSON escapes.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

type Str<'a> = Option<Cow<'a, str>>;

#[derive(Deserialize)]
pub(crate) struct RawRecord<'a> {
    #[serde(borrow, default)]
    pub time: Str<'a>,
    #[serde(borrow, default)]
    pub category: Str<'a>,
    #[serde(rename = "operationName", borrow, default)]
    pub operation_name: Str<'a>,
    #[serde(rename = "macAddress", borrow, default)]
    pub mac_address: Str<'a>,
    // NSG flow logs
    #[serde(rename = "systemId", borrow, default)]
    pub system_id: Str<'a>,
    #[serde(rename = "resourceId", borrow, default)]
    pub resource_id: Str<'a>,
    #[serde(borrow, default)]
    pub properties: Option<NsgProperties<'a>>,
    // VNet flow logs
    #[serde(rename = "flowLogVersion", default)]
    pub flow_log_version: Option<u32>,
    #[serde(rename = "flowLogGUID", borrow, default)]
    pub flow_log_guid: Str<'a>,
    #[serde(rename = "flowLogResourceID", borrow, default)]
    pub flow_log_resource_id: Str<'a>,
    #[serde(rename = "targetResourceID", borrow, default)]
    pub target_resource_id: Str<'a>,
    #[serde(rename = "flowRecords", borrow, default)]
    pub flow_records: Option<VnetFlowRecords<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct NsgProperties<'a> {
    #[serde(rename = "Version", default)]
    pub version: Option<u32>,
    #[serde(borrow, default)]
    pub flows: Groups<NsgRuleFlows<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct NsgRuleFlows<'a> {
    #[serde(borrow, default)]
    pub rule: Str<'a>,
    #[serde(borrow, default)]
    pub flows: Groups<NsgMacFlows<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct NsgMacFlows<'a> {
    #[serde(borrow, default)]
    pub mac: Str<'a>,
    #[serde(rename = "flowTuples", borrow, default)]
    pub flow_tuples: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(crate) struct VnetFlowRecords<'a> {
    #[serde(borrow, default)]
    pub flows: Groups<VnetAclFlows<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct VnetAclFlows<'a> {
    #[serde(rename = "aclID", borrow, default)]
    pub acl_id: Str<'a>,
    #[serde(rename = "flowGroups", borrow, default)]
    pub flow_groups: Groups<VnetFlowGroup<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct VnetFlowGroup<'a> {
    #[serde(borrow, default)]
    pub rule: Str<'a>,
    #[serde(rename = "flowTuples", borrow, default)]
    pub flow_tuples: Option<&'a RawValue>,
}

/// Calls `each` with every element of a `flowTuples` array: the string, or `None` for an
/// element that is not one.
///
/// `flowTuples` is kept raw by serde and walked here from quote to quote: nearly every
/// tuple is plain ASCII without escapes, so this avoids a `Cow` per tuple. Strings with
/// escapes, and arrays holding anything but strings, go through serde one element at a
/// time. Neither way keeps a list: a record of millions of tiny tuples costs no memory
/// per tuple here.
pub(crate) fn for_each_tuple<'a>(
    raw: Option<&'a RawValue>,
    mut each: impl FnMut(Option<Cow<'a, str>>),
) -> Result<(), serde_json::Error> {
    let Some(raw) = raw else { return Ok(()) };
    let text = raw.get();
    // First the shape, so that a fallback never repeats tuples; then the tuples.
    if walk_plain_strings(text, &mut |_| {}).is_some() {
        walk_plain_strings(text, &mut each);
        return Ok(());
    }
    // Not a plain array of strings: let serde decode it, element by element. The text
    // is valid JSON (serde checked it when it kept it raw), so the only error possible
    // is that it is not an array, before any element.
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_seq(EachTuple(&mut each))?;
    de.end()
}

/// Walks an array of strings without escapes, calling `each` with every one; `None` at
/// the first thing that is not one (after calling `each` for those before it).
fn walk_plain_strings<'a>(
    text: &'a str,
    each: &mut impl FnMut(Option<Cow<'a, str>>),
) -> Option<()> {
    let b = text.as_bytes();
    let skip_ws = |mut i: usize| {
        while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            i += 1;
        }
        i
    };
    let mut i = skip_ws(0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(i + 1);
    if b.get(i) == Some(&b']') {
        return Some(());
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let start = i + 1;
        let len = memchr::memchr2(b'"', b'\\', &b[start..])?;
        if b[start + len] != b'"' {
            return None; // an escape: serde decodes it
        }
        each(Some(Cow::Borrowed(&text[start..start + len])));
        i = skip_ws(start + len + 1);
        match b.get(i) {
            Some(b',') => i = skip_ws(i + 1),
            Some(b']') => return Some(()),
            _ => return None,
        }
    }
}

/// Serde's side of [`for_each_tuple`]: hands each element over as it is decoded.
struct EachTuple<'f, F>(&'f mut F);

impl<'de, F: FnMut(Option<Cow<'de, str>>)> Visitor<'de> for EachTuple<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of flow tuple strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(t) = seq.next_element::<TupleStr<'de>>()? {
            (self.0)(t.0);
        }
        Ok(())
    }
}

/// A list of flow groups (`properties.flows`, a rule's `flows`, `flowRecords.flows`, an
/// ACL's `flowGroups`) that keeps only elements holding tuples: an element costs tens of
/// bytes in memory, and `{}` costs three on the wire, so a record of empty elements
/// would otherwise take gigabytes. What is kept holds at least one tuple string.
pub(crate) struct Groups<T>(pub Vec<T>);

impl<T> Default for Groups<T> {
    fn default() -> Self {
        Groups(Vec::new())
    }
}

impl<T> std::ops::Deref for Groups<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

/// Whether a flow group element leads to any tuple.
pub(crate) trait HoldsTuples {
    fn holds_tuples(&self) -> bool;
}

fn any_tuple(raw: Option<&RawValue>) -> bool {
    let ws: &[char] = &[' ', '\n', '\r', '\t'];
    raw.is_some_and(|r| match r.get().trim_start_matches(ws).strip_prefix('[') {
        Some(inside) => !inside.trim_start_matches(ws).starts_with(']'),
        None => true, // not an array: kept, to be reported
    })
}

impl<'de, T: Deserialize<'de> + HoldsTuples> Deserialize<'de> for Groups<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeepHolding<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + HoldsTuples> Visitor<'de> for KeepHolding<T> {
            type Value = Groups<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Groups<T>, A::Error> {
                let mut kept = Vec::new();
                while let Some(element) = seq.next_element::<T>()? {
                    if element.holds_tuples() {
                        kept.push(element);
                    }
                }
                Ok(Groups(kept))
            }
        }
        d.deserialize_seq(KeepHolding(std::marker::PhantomData))
    }
}

impl HoldsTuples for NsgRuleFlows<'_> {
    fn holds_tuples(&self) -> bool {
        !self.flows.is_empty()
    }
}
impl HoldsTuples for NsgMacFlows<'_> {
    fn holds_tuples(&self) -> bool {
        any_tuple(self.flow_tuples)
    }
}
impl HoldsTuples for VnetAclFlows<'_> {
    fn holds_tuples(&self) -> bool {
        !self.flow_groups.is_empty()
    }
}
impl HoldsTuples for VnetFlowGroup<'_> {
    fn holds_tuples(&self) -> bool {
        any_tuple(self.flow_tuples)
    }
}

/// One element of `flowTuples`: a string, or `None` for anything else, so that a
/// tuple of the wrong type is skipped alone instead of failing its whole record.
pub(crate) struct TupleStr<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for TupleStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TupleStrVisitor)
    }
}

struct TupleStrVisitor;

impl<'de> Visitor<'de> for TupleStrVisitor {
    type Value = TupleStr<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a flow tuple string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(TupleStr(Some(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(TupleStr(Some(Cow::Owned(v.to_owned()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(TupleStr(Some(Cow::Owned(v))))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(TupleStr(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(TupleStr(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(TupleStr(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(TupleStr(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(TupleStr(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TupleStr(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(TupleStr(None))
    }
}
