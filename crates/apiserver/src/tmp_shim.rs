//! TEMPORARY: `proxylab-apimachinery::validation` has not landed yet. Until it does, only names are
//! validated (with apimachinery's DNS-1123 checks); this module is deleted when the real one lands.
pub mod validation {
    use proxylab_apimachinery::registry::ResourceInfo;
    use proxylab_apimachinery::selector::{is_dns1123_label, is_dns1123_subdomain};
    use proxylab_apimachinery::status::Cause;
    use serde_json::Value;

    pub fn validate(info: &ResourceInfo, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(name) = obj["metadata"]["name"].as_str() {
            let label_only = matches!(info.resource, "namespaces" | "services");
            let ok = if label_only {
                is_dns1123_label(name)
            } else {
                is_dns1123_subdomain(name)
            };
            if !ok {
                causes.push(Cause::invalid(
                    "metadata.name",
                    &obj["metadata"]["name"],
                    "a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                ));
            }
        }
        causes
    }

    pub fn validate_update(_info: &ResourceInfo, _old: &Value, _new: &Value) -> Vec<Cause> {
        Vec::new()
    }
}
