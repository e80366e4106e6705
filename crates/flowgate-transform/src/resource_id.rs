//! Splitting an Azure resource id into subscription, resource group and name.

/// `/SUBSCRIPTIONS/{sub}/RESOURCEGROUPS/{rg}/PROVIDERS/.../{name}`, compared
/// case-insensitively (Azure upper-cases ids in NSG logs, not in VNet logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceIdParts<'a> {
    pub subscription_id: &'a str,
    pub resource_group: &'a str,
    /// The last segment: the NSG, VNet, subnet or NIC name.
    pub name: &'a str,
}

impl<'a> ResourceIdParts<'a> {
    pub fn parse(id: &'a str) -> Self {
        let mut parts = ResourceIdParts::default();
        let mut segments = id.split('/').filter(|s| !s.is_empty());
        while let Some(seg) = segments.next() {
            if seg.eq_ignore_ascii_case("subscriptions") {
                parts.subscription_id = segments.next().unwrap_or("");
            } else if seg.eq_ignore_ascii_case("resourcegroups") {
                parts.resource_group = segments.next().unwrap_or("");
            }
        }
        parts.name = id.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsg_and_vnet_ids() {
        let p = ResourceIdParts::parse("/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FABRIKAMRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/FABRIAKMVM1-NSG");
        assert_eq!(
            p,
            ResourceIdParts {
                subscription_id: "00000000-0000-0000-0000-000000000000",
                resource_group: "FABRIKAMRG",
                name: "FABRIAKMVM1-NSG"
            }
        );
        let p = ResourceIdParts::parse(
            "/subscriptions/abc/resourceGroups/myRG/providers/Microsoft.Network/virtualNetworks/vnet1/subnets/web",
        );
        assert_eq!(
            (p.subscription_id, p.resource_group, p.name),
            ("abc", "myRG", "web")
        );
        assert_eq!(ResourceIdParts::parse(""), ResourceIdParts::default());
        assert_eq!(
            ResourceIdParts::parse("/SUBSCRIPTIONS/").subscription_id,
            ""
        );
    }
}
