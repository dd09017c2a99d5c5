//! Reading what an in-memory metric exporter received.

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};

/// The last collection's value of the `u64` sum `name` of `scope` at exactly these attributes (none extra).
pub fn u64_sum(
    metrics: &[ResourceMetrics],
    scope: &str,
    name: &str,
    attrs: &[(&str, &str)],
) -> Option<u64> {
    let want: Vec<KeyValue> = attrs
        .iter()
        .map(|(k, v)| KeyValue::new(k.to_string(), v.to_string()))
        .collect();
    metrics
        .last()
        .into_iter()
        .flat_map(|rm| rm.scope_metrics())
        .filter(|s| s.scope().name() == scope)
        .flat_map(|s| s.metrics())
        .filter(|m| m.name() == name)
        .find_map(|m| match m.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => sum
                .data_points()
                .find(|p| {
                    p.attributes().count() == want.len()
                        && want.iter().all(|kv| p.attributes().any(|a| a == kv))
                })
                .map(|p| p.value()),
            _ => None,
        })
}
