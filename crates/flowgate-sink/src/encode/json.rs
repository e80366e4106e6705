//! One JSON object per tuple, with the stable names listed in docs/FORMATS.md.

use super::{escape, write, GroupCache};
use flowgate_core::{AddressFacts, FlowEvent, FlowGroup, Geo, Origin, RecordContext, Summary};

pub(super) fn group(o: &Origin, g: &FlowGroup, r: &RecordContext, c: &mut GroupCache) {
    let b = &mut c.tail;
    string(b, b",\"rule\":\"", &g.rule);
    if !c.mac.is_empty() {
        b.extend_from_slice(b",\"mac\":\"");
        b.extend_from_slice(&c.mac);
        b.push(b'"');
    }
    if let Some(acl) = &g.acl_id {
        string(b, b",\"acl_id\":\"", acl);
    }
    b.extend_from_slice(b",\"log_type\":\"");
    b.extend_from_slice(r.kind.as_str().as_bytes());
    b.extend_from_slice(b"\",\"flow_log_version\":");
    write::uint(b, r.version);
    string(b, b",\"record_time\":\"", &r.time);
    string(b, b",\"category\":\"", &r.category);
    string(b, b",\"operation_name\":\"", &r.operation_name);
    if let Some(s) = &r.system_id {
        string(b, b",\"system_id\":\"", s);
    }
    string(b, b",\"resource_id\":\"", &r.resource_id);
    string(b, b",\"subscription_id\":\"", &r.subscription_id);
    string(b, b",\"resource_group\":\"", &r.resource_group);
    string(b, b",\"resource_name\":\"", &r.resource_name);
    if let Some(s) = &r.flow_log_guid {
        string(b, b",\"flow_log_guid\":\"", s);
    }
    if let Some(s) = &r.flow_log_resource_id {
        string(b, b",\"flow_log_resource_id\":\"", s);
    }
    if !o.source.is_empty() {
        string(b, b",\"source\":\"", &o.source);
    }
    if let Some(tag) = &o.subscription_tag {
        string(b, b",\"subscription_tag\":\"", tag);
    }
    b.push(b'}');
}

/// One address's `src_asset` / `src_geo` / `src_dns` (or `dst_...`) members.
pub(super) fn address_fields(facts: &AddressFacts, side: usize, out: &mut Vec<u8>) {
    let prefix = ["src", "dst"][side];
    if let Some(a) = &facts.asset {
        out.extend_from_slice(format!(",\"{prefix}_asset\":{{").as_bytes());
        string(out, b"\"name\":\"", &a.name);
        string(out, b",\"owner\":\"", &a.owner);
        string(out, b",\"environment\":\"", &a.environment);
        string(out, b",\"tags\":\"", &a.tags);
        out.push(b'}');
    }
    if let Some(g) = &facts.geo {
        out.extend_from_slice(format!(",\"{prefix}_geo\":{{").as_bytes());
        geo_object(out, g);
        out.push(b'}');
    }
    if let Some(name) = &facts.dns {
        string(out, format!(",\"{prefix}_dns\":\"").as_bytes(), name);
    }
}

/// The fields of a [`Geo`] that are set, comma-separated, without braces.
fn geo_object(out: &mut Vec<u8>, g: &Geo) {
    let mut sep: &[u8] = b"";
    let mut key = |out: &mut Vec<u8>, k: &[u8]| {
        out.extend_from_slice(sep);
        out.extend_from_slice(k);
        sep = b",";
    };
    if let Some(v) = &g.country {
        key(out, b"\"country\":\"");
        escape::json_str(v, out);
        out.push(b'"');
    }
    if let Some(v) = &g.city {
        key(out, b"\"city\":\"");
        escape::json_str(v, out);
        out.push(b'"');
    }
    if let Some(v) = &g.latitude {
        key(out, b"\"lat\":");
        out.extend_from_slice(v.as_bytes());
    }
    if let Some(v) = &g.longitude {
        key(out, b"\"lon\":");
        out.extend_from_slice(v.as_bytes());
    }
    if let Some(v) = g.asn {
        key(out, b"\"asn\":");
        write::uint(out, v);
    }
    if let Some(v) = &g.as_org {
        key(out, b"\"as_org\":\"");
        escape::json_str(v, out);
        out.push(b'"');
    }
}

fn string(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    escape::json_str(value, out);
    out.push(b'"');
}

pub(super) fn event(
    e: &FlowEvent,
    enriched: Option<[&[u8]; 4]>,
    summary: Option<&Summary>,
    c: &GroupCache,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"time\":\"");
    write::rfc3339_ms(out, e.time_ms);
    out.extend_from_slice(b"\",\"time_ms\":");
    write::uint(out, e.time_ms);
    out.extend_from_slice(b",\"src_ip\":\"");
    write::ip(out, &e.src_ip);
    out.extend_from_slice(b"\",\"src_port\":");
    write::uint(out, e.src_port);
    out.extend_from_slice(b",\"dst_ip\":\"");
    write::ip(out, &e.dst_ip);
    out.extend_from_slice(b"\",\"dst_port\":");
    write::uint(out, e.dst_port);
    out.extend_from_slice(b",\"protocol\":\"");
    super::protocol(out, e.protocol);
    out.extend_from_slice(b"\",\"protocol_number\":");
    write::uint(out, e.protocol.0);
    out.extend_from_slice(b",\"direction\":\"");
    out.extend_from_slice(e.direction.as_str().as_bytes());
    out.extend_from_slice(b"\",\"action\":\"");
    out.extend_from_slice(e.action.as_str().as_bytes());
    out.push(b'"');
    if let Some(state) = e.state {
        out.extend_from_slice(b",\"flow_state\":\"");
        out.extend_from_slice(state.as_str().as_bytes());
        out.push(b'"');
    }
    if let Some(enc) = e.encryption {
        out.extend_from_slice(b",\"encryption\":\"");
        out.extend_from_slice(enc.code().as_bytes());
        out.push(b'"');
    }
    write::optional_uint(out, b",\"packets_src_to_dst\":", e.packets_src_to_dst);
    write::optional_uint(out, b",\"bytes_src_to_dst\":", e.bytes_src_to_dst);
    write::optional_uint(out, b",\"packets_dst_to_src\":", e.packets_dst_to_src);
    write::optional_uint(out, b",\"bytes_dst_to_src\":", e.bytes_dst_to_src);
    for piece in enriched.iter().flatten() {
        out.extend_from_slice(piece);
    }
    if let Some(s) = summary {
        out.extend_from_slice(b",\"first_seen\":\"");
        write::rfc3339_ms(out, e.time_ms);
        out.extend_from_slice(b"\",\"last_seen\":\"");
        write::rfc3339_ms(out, s.last_ms);
        out.extend_from_slice(b"\",\"last_seen_ms\":");
        write::uint(out, s.last_ms);
        out.extend_from_slice(b",\"count\":");
        write::uint(out, s.count);
    }
    out.extend_from_slice(&c.tail);
}
