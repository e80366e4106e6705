//! ArcSight CEF, compatible with Microsoft's NSG flow log connector (see docs/FORMATS.md).

use super::{escape, write, GroupCache};
use flowgate_core::{Direction, FlowEvent, FlowGroup, Origin, RecordContext};
use std::net::IpAddr;

pub(super) fn group(o: &Origin, g: &FlowGroup, r: &RecordContext, c: &mut GroupCache) {
    let a = &mut c.head;
    a.extend_from_slice(b"CEF:0|Microsoft.Network|");
    a.extend_from_slice(super::product(r.kind));
    write::uint(a, r.version);
    a.push(b'|');
    escape::cef_header(&r.category, a);
    a.push(b'|');
    escape::cef_header(&r.operation_name, a);
    a.push(b'|');

    let b = &mut c.tail;
    b.extend_from_slice(b"|deviceExternalId=");
    escape::cef_value(&r.subscription_id, b);
    b.push(b'/');
    escape::cef_value(&r.resource_group, b);
    b.push(b'/');
    escape::cef_value(&r.resource_name, b);
    b.extend_from_slice(b" cs1=");
    escape::cef_value(&g.rule, b);
    b.extend_from_slice(b" cs1Label=NSGRuleName cs3=");
    escape::cef_value(&r.subscription_id, b);
    b.extend_from_slice(b" cs3Label=SubscriptionId cs4=");
    escape::cef_value(&r.resource_group, b);
    b.extend_from_slice(b" cs4Label=ResourceGroup");
    if let Some(acl) = &g.acl_id {
        b.extend_from_slice(b" cs6=");
        escape::cef_value(acl, b);
        b.extend_from_slice(b" cs6Label=AclId");
    }
    if !o.source.is_empty() {
        b.extend_from_slice(b" flexString1=");
        escape::cef_value(&o.source, b);
        b.extend_from_slice(b" flexString1Label=Source");
    }
    if let Some(tag) = &o.subscription_tag {
        b.extend_from_slice(b" flexString2=");
        escape::cef_value(tag, b);
        b.extend_from_slice(b" flexString2Label=SubscriptionTag");
    }
}

pub(super) fn event(e: &FlowEvent, c: &GroupCache, out: &mut Vec<u8>) {
    out.extend_from_slice(&c.head);
    out.extend_from_slice(super::severity_digit(e.action));
    out.extend_from_slice(&c.tail);
    out.extend_from_slice(b" rt=");
    write::uint(out, e.time_ms);
    address(
        out,
        &e.src_ip,
        b" src=",
        b" c6a2=",
        b" c6a2Label=Source IPv6 Address",
    );
    address(
        out,
        &e.dst_ip,
        b" dst=",
        b" c6a3=",
        b" c6a3Label=Destination IPv6 Address",
    );
    out.extend_from_slice(b" spt=");
    write::uint(out, e.src_port);
    out.extend_from_slice(b" dpt=");
    write::uint(out, e.dst_port);
    out.extend_from_slice(b" proto=");
    super::protocol(out, e.protocol);
    let inbound = e.direction == Direction::Inbound;
    out.extend_from_slice(if inbound {
        b" deviceDirection=0 act="
    } else {
        b" deviceDirection=1 act="
    });
    out.extend_from_slice(e.action.code().as_bytes());
    if !c.mac.is_empty() {
        // The NIC is the destination of inbound flows and the source of outbound ones.
        out.extend_from_slice(if inbound { b" dmac=" } else { b" smac=" });
        out.extend_from_slice(&c.mac);
    }
    if let Some(state) = e.state {
        out.extend_from_slice(b" cs2=");
        out.extend_from_slice(state.code().as_bytes());
        out.extend_from_slice(b" cs2Label=FlowState");
    }
    labelled(
        out,
        b" cn1=",
        e.packets_src_to_dst,
        b" cn1Label=PacketsStoD",
    );
    labelled(
        out,
        b" cn2=",
        e.packets_dst_to_src,
        b" cn2Label=PacketsDtoS",
    );
    // Bytes relative to the NIC, as the connector does: inbound s→d bytes come in.
    let (bytes_in, bytes_out) = if inbound {
        (e.bytes_src_to_dst, e.bytes_dst_to_src)
    } else {
        (e.bytes_dst_to_src, e.bytes_src_to_dst)
    };
    write::optional_uint(out, b" bytesIn=", bytes_in);
    write::optional_uint(out, b" bytesOut=", bytes_out);
    if let Some(enc) = e.encryption {
        out.extend_from_slice(b" cs5=");
        out.extend_from_slice(enc.code().as_bytes());
        out.extend_from_slice(b" cs5Label=FlowEncryption");
    }
}

/// CEF's `src`/`dst` are IPv4 only; IPv6 goes to `c6a2`/`c6a3` with their labels.
fn address(out: &mut Vec<u8>, ip: &IpAddr, v4_key: &[u8], v6_key: &[u8], v6_label: &[u8]) {
    if ip.is_ipv4() {
        out.extend_from_slice(v4_key);
        write::ip(out, ip);
    } else {
        out.extend_from_slice(v6_key);
        write::ip(out, ip);
        out.extend_from_slice(v6_label);
    }
}

/// A custom number field and its label, when present.
fn labelled(out: &mut Vec<u8>, key: &[u8], value: Option<u64>, label: &[u8]) {
    if value.is_some() {
        write::optional_uint(out, key, value);
        out.extend_from_slice(label);
    }
}
