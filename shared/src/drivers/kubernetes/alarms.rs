//! The CloudWatch alarms of an app, one per threshold the item gives:
//! CPU and memory from Container Insights (the share of the pods' limits),
//! the 5xx share and p99 latency from CloudWatch Application Signals (the
//! EKS add-on `amazon-cloudwatch-observability`, which the cluster needs
//! for those two to see data). Each is named after the request and action
//! and tagged like every other resource PAO makes.

use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic, Tag};

use super::app::App;
use crate::action::ActionError;
use crate::aws::sdk;

/// One alarm to put.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub name: String,
    pub description: String,
    pub namespace: &'static str,
    pub metric: &'static str,
    pub dimensions: Vec<(&'static str, String)>,
    /// `Average`, or a percentile such as `p99`.
    pub statistic: &'static str,
    pub threshold: f64,
}

/// The alarms `app` asks for on `cluster`, named `<prefix>-<what>`.
pub fn alarms(app: &App, cluster: &str, prefix: &str) -> Vec<Alarm> {
    if !app.monitoring.enabled {
        return Vec::new();
    }
    let alerts = &app.monitoring.alerts;
    let insights = vec![
        ("ClusterName", cluster.to_string()),
        ("Namespace", app.namespace.clone()),
        ("PodName", app.name.clone()),
    ];
    let signals = vec![
        ("Environment", format!("eks:{cluster}/{}", app.namespace)),
        ("Service", app.name.clone()),
    ];
    let what = format!("{} in {}/{}", app.name, cluster, app.namespace);
    let mut alarms = Vec::new();
    if let Some(percent) = alerts.cpu_percent {
        alarms.push(Alarm {
            name: format!("{prefix}-cpu"),
            description: format!("CPU of {what} above {percent}% of its limit"),
            namespace: "ContainerInsights",
            metric: "pod_cpu_utilization_over_pod_limit",
            dimensions: insights.clone(),
            statistic: "Average",
            threshold: percent,
        });
    }
    if let Some(percent) = alerts.memory_percent {
        alarms.push(Alarm {
            name: format!("{prefix}-memory"),
            description: format!("memory of {what} above {percent}% of its limit"),
            namespace: "ContainerInsights",
            metric: "pod_memory_utilization_over_pod_limit",
            dimensions: insights,
            statistic: "Average",
            threshold: percent,
        });
    }
    if let Some(percent) = alerts.error_rate_percent {
        // `Fault` is 1 for a 5xx answer and 0 otherwise: its average is
        // the share of 5xx answers.
        alarms.push(Alarm {
            name: format!("{prefix}-errors"),
            description: format!("5xx answers of {what} above {percent}%"),
            namespace: "ApplicationSignals",
            metric: "Fault",
            dimensions: signals.clone(),
            statistic: "Average",
            threshold: percent / 100.0,
        });
    }
    if let Some(millis) = alerts.p99_latency_ms {
        alarms.push(Alarm {
            name: format!("{prefix}-latency"),
            description: format!("p99 latency of {what} above {millis} ms"),
            namespace: "ApplicationSignals",
            metric: "Latency",
            dimensions: signals,
            statistic: "p99",
            threshold: millis,
        });
    }
    alarms
}

impl Alarm {
    /// Sends it: three one-minute periods above the threshold raise it; no
    /// data (an idle app) does not.
    pub async fn put(
        &self,
        cloudwatch: &aws_sdk_cloudwatch::Client,
        tags: &[(String, String)],
        actions: &[String],
    ) -> Result<(), ActionError> {
        let dimensions = self
            .dimensions
            .iter()
            .map(|(name, value)| Dimension::builder().name(*name).value(value).build())
            .collect();
        let tags = tags
            .iter()
            .map(|(key, value)| Tag::builder().key(key).value(value).build())
            .collect();
        let mut request = cloudwatch
            .put_metric_alarm()
            .alarm_name(&self.name)
            .alarm_description(&self.description)
            .namespace(self.namespace)
            .metric_name(self.metric)
            .set_dimensions(Some(dimensions))
            .period(60)
            .evaluation_periods(3)
            .threshold(self.threshold)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .treat_missing_data("notBreaching")
            .set_alarm_actions((!actions.is_empty()).then(|| actions.to_vec()))
            .set_tags(Some(tags));
        request = if self.statistic == "Average" {
            request.statistic(Statistic::Average)
        } else {
            request.extended_statistic(self.statistic)
        };
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|err| sdk::failed("CloudWatch", "PutMetricAlarm", &err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(alerts: serde_json::Value) -> App {
        App::read(
            json!({
                "cluster": "shop-prod", "namespace": "shop", "name": "shop", "image": "shop:1",
                "monitoring": {"enabled": true, "alerts": alerts}
            })
            .as_object()
            .cloned()
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn one_alarm_per_threshold_given_named_after_the_request() {
        let all = alarms(
            &app(
                json!({"cpu_percent": 80, "memory_percent": 85, "error_rate_percent": 1.5, "p99_latency_ms": 900}),
            ),
            "shop-prod",
            "pao-r1-app",
        );
        let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pao-r1-app-cpu",
                "pao-r1-app-memory",
                "pao-r1-app-errors",
                "pao-r1-app-latency"
            ]
        );
        assert_eq!(all[0].metric, "pod_cpu_utilization_over_pod_limit");
        assert_eq!(
            all[0].dimensions,
            [
                ("ClusterName", "shop-prod".to_string()),
                ("Namespace", "shop".to_string()),
                ("PodName", "shop".to_string())
            ]
        );
        assert_eq!(all[2].threshold, 0.015, "Fault's average is a fraction");
        assert_eq!(
            (all[3].metric, all[3].statistic, all[3].threshold),
            ("Latency", "p99", 900.0)
        );
        assert_eq!(
            all[3].dimensions[0],
            ("Environment", "eks:shop-prod/shop".to_string())
        );
    }

    #[test]
    fn no_threshold_or_monitoring_off_makes_no_alarm() {
        assert!(alarms(&app(json!({})), "c", "p").is_empty());
        let mut off = app(json!({"cpu_percent": 80}));
        off.monitoring.enabled = false;
        assert!(alarms(&off, "c", "p").is_empty());
    }
}
