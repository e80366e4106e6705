//! IBM QRadar LEEF 2.0, tab-delimited (see docs/FORMATS.md).

use super::{escape, write, GroupCache};
use flowgate_core::{Action, Direction, FlowEvent, FlowGroup, Origin, RecordContext};

pub(super) fn group(o: &Origin, g: &FlowGroup, r: &RecordContext, c: &mut GroupCache) {
    let a = &mut c.head;
    a.extend_from_slice(b"LEEF:2.0|Microsoft.Network|");
    a.extend_from_slice(super::product(r.kind));
    write::uint(a, r.version);
    a.push(b'|');

    let b = &mut c.tail;
    attr(b, b"\tcat=", &r.category);
    attr(b, b"\truleName=", &g.rule);
    attr(b, b"\tsubscriptionId=", &r.subscription_id);
    attr(b, b"\tresourceGroup=", &r.resource_group);
    attr(b, b"\tresourceName=", &r.resource_name);
    attr(b, b"\tresourceId=", &r.resource_id);
    if let Some(acl) = &g.acl_id {
        attr(b, b"\taclId=", acl);
    }
    if !o.source.is_empty() {
        attr(b, b"\tsourceName=", &o.source);
    }
    if let Some(tag) = &o.subscription_tag {
        attr(b, b"\tsubscriptionTag=", tag);
    }
}

fn attr(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    escape::leef_value(value, out);
}

pub(super) fn event(e: &FlowEvent, c: &GroupCache, out: &mut Vec<u8>) {
    out.extend_from_slice(&c.head);
    out.extend_from_slice(match e.action {
        Action::Allow => b"FlowAllowed|x09|devTime=",
        Action::Deny => b"FlowDenied|x09|devTime=",
    });
    write::rfc3339_ms(out, e.time_ms);
    out.extend_from_slice(b"\tdevTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSX\tsev=");
    out.extend_from_slice(super::severity_digit(e.action));
    out.extend_from_slice(b"\tsrc=");
    write::ip(out, &e.src_ip);
    out.extend_from_slice(b"\tdst=");
    write::ip(out, &e.dst_ip);
    out.extend_from_slice(b"\tsrcPort=");
    write::uint(out, e.src_port);
    out.extend_from_slice(b"\tdstPort=");
    write::uint(out, e.dst_port);
    out.extend_from_slice(b"\tproto=");
    super::protocol(out, e.protocol);
    out.extend_from_slice(b"\taction=");
    out.extend_from_slice(e.action.as_str().as_bytes());
    out.extend_from_slice(b"\tdirection=");
    out.extend_from_slice(e.direction.as_str().as_bytes());
    if let Some(state) = e.state {
        out.extend_from_slice(b"\tflowState=");
        out.extend_from_slice(state.as_str().as_bytes());
    }
    if let Some(enc) = e.encryption {
        out.extend_from_slice(b"\tencryption=");
        out.extend_from_slice(enc.code().as_bytes());
    }
    write::optional_uint(out, b"\tsrcPackets=", e.packets_src_to_dst);
    write::optional_uint(out, b"\tsrcBytes=", e.bytes_src_to_dst);
    write::optional_uint(out, b"\tdstPackets=", e.packets_dst_to_src);
    write::optional_uint(out, b"\tdstBytes=", e.bytes_dst_to_src);
    if !c.mac.is_empty() {
        out.extend_from_slice(match e.direction {
            Direction::Inbound => b"\tdstMAC=",
            Direction::Outbound => b"\tsrcMAC=",
        });
        out.extend_from_slice(&c.mac);
    }
    out.extend_from_slice(&c.tail);
}
