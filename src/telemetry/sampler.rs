//! Which spans are sampled: the settings of `OTEL_TRACES_SAMPLER` (parsed with the other
//! variables in `settings`) and the OpenTelemetry SDK sampler each one stands for.

use opentelemetry_sdk::trace::Sampler;

/// Which spans are sampled (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`): the
/// OpenTelemetry SDK's built-in samplers. A parent-based sampler follows the parent's decision
/// for child spans and uses the inner sampler for root spans (the run's `actor.run`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerConfig {
    /// `always_on`: every span.
    AlwaysOn,
    /// `always_off`: none.
    AlwaysOff,
    /// `traceidratio`: this ratio (0..=1) of trace ids, whatever the parent decided.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default).
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`: this ratio of new traces.
    ParentBasedTraceIdRatio(f64),
}

impl SamplerConfig {
    /// The SDK's sampler. A ratio of 1 is the always-on sampler (no per-trace-id arithmetic).
    pub fn sampler(self) -> Sampler {
        let ratio = |r: f64| {
            if r >= 1.0 {
                Sampler::AlwaysOn
            } else {
                Sampler::TraceIdRatioBased(r)
            }
        };
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(r) => ratio(r),
            Self::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentBasedTraceIdRatio(r) => Sampler::ParentBased(Box::new(ratio(r))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::Context;
    use opentelemetry::trace::TraceContextExt as _;

    /// What each setting samples, decided by the SDK's own samplers: root spans, and children
    /// of a sampled and of an unsampled remote parent.
    #[test]
    fn samplers_decide_as_the_spec_says() {
        use SamplerConfig::*;
        use opentelemetry::trace::{
            SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState,
        };
        use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample as _};

        let parent = |sampled: bool| {
            let flags = if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                flags,
                true,
                TraceState::default(),
            ))
        };
        // How many of 1000 root spans (spread trace ids) are sampled, and whether a child of a
        // sampled and of an unsampled parent is.
        let decide = |config: SamplerConfig| {
            let sampler = config.sampler();
            let sampled = |cx: Option<&Context>, id: u128| {
                sampler
                    .should_sample(cx, TraceId::from(id), "s", &SpanKind::Internal, &[], &[])
                    .decision
                    == SamplingDecision::RecordAndSample
            };
            let roots = (1..=1000u128)
                .filter(|i| {
                    sampled(
                        None,
                        i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                    )
                })
                .count();
            (
                roots,
                sampled(Some(&parent(true)), 7),
                sampled(Some(&parent(false)), 7),
            )
        };
        assert_eq!(decide(AlwaysOn), (1000, true, true));
        assert_eq!(decide(AlwaysOff), (0, false, false));
        assert_eq!(decide(ParentBasedAlwaysOn), (1000, true, false));
        assert_eq!(decide(ParentBasedAlwaysOff), (0, true, false));
        let (roots, _, _) = decide(TraceIdRatio(0.25));
        assert!((150..350).contains(&roots), "{roots}");
        let (roots, child_of_sampled, child_of_unsampled) = decide(ParentBasedTraceIdRatio(0.25));
        assert!((150..350).contains(&roots), "{roots}");
        assert!(child_of_sampled && !child_of_unsampled);
        assert_eq!(decide(ParentBasedTraceIdRatio(1.0)), (1000, true, false));
        assert_eq!(decide(TraceIdRatio(0.0)).0, 0);
    }
}
