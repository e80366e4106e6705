//! The flow log record as it is on the wire, borrowed from the read buffer.
//!
//! Key order varies between writers; serde does not care. Unknown keys are ignored so
//! that new fields Azure adds do not break parsing. Strings are `Cow`: borrowed unless
//! they contain JSON escapes.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
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
    pub flows: Vec<NsgRuleFlows<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct NsgRuleFlows<'a> {
    #[serde(borrow, default)]
    pub rule: Str<'a>,
    #[serde(borrow, default)]
    pub flows: Vec<NsgMacFlows<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct NsgMacFlows<'a> {
    #[serde(borrow, default)]
    pub mac: Str<'a>,
    #[serde(rename = "flowTuples", borrow, default)]
    pub flow_tuples: Vec<TupleStr<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct VnetFlowRecords<'a> {
    #[serde(borrow, default)]
    pub flows: Vec<VnetAclFlows<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct VnetAclFlows<'a> {
    #[serde(rename = "aclID", borrow, default)]
    pub acl_id: Str<'a>,
    #[serde(rename = "flowGroups", borrow, default)]
    pub flow_groups: Vec<VnetFlowGroup<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct VnetFlowGroup<'a> {
    #[serde(borrow, default)]
    pub rule: Str<'a>,
    #[serde(rename = "flowTuples", borrow, default)]
    pub flow_tuples: Vec<TupleStr<'a>>,
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
