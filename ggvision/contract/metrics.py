"""The Prometheus metric families Health exports: names, types, help and labels. They are an interface: the
monitoring pack (deploy/monitoring: alert and recording rules, the Grafana dashboard) is checked against them."""

from __future__ import annotations

# name -> (type, help, labels). Names, units and labels are an interface (deploy/monitoring/ reads them).
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ggvision_cpu_usage_ratio": ("gauge", "CPU busy ratio over the last period (cpu=all or a core index)", ("cpu",)),
    "ggvision_load1": ("gauge", "1-minute load average", ()),
    "ggvision_temperature_celsius": ("gauge", "Temperature sensors exposed by the host (chip/label)", ("sensor",)),
    "ggvision_memory_available_bytes": ("gauge", "Memory available for new allocations", ()),
    "ggvision_swap_used_bytes": ("gauge", "Swap in use", ()),
    "ggvision_component_rss_bytes": ("gauge", "Resident memory of a component's processes", ("component",)),
    "ggvision_component_rss_growth_bytes_per_hour": (
        "gauge", "Least-squares slope of component RSS over the leak window (leak signal)", ("component",)),
    "ggvision_disk_free_bytes": ("gauge", "Free space of the data folder's filesystem", ("path",)),
    "ggvision_disk_total_bytes": ("gauge", "Size of the data folder's filesystem", ("path",)),
    "ggvision_disk_budget_used_bytes": ("gauge", "Bytes the suite keeps under its root (the disk budget's count)", ()),
    "ggvision_disk_budget_bytes": ("gauge", "The suite's disk budget (budgetBytes; 0: only the reserve)", ()),
    "ggvision_disk_budget_headroom_bytes": ("gauge", "min(budget - used, free - reserve): disk-low under lowBytes, "
                                            "eviction under 0", ()),
    "ggvision_disk_budget_level": ("gauge", "The disk budget's level: 0 ok, 1 low (disk-low), 2 evicting", ()),
    "ggvision_disk_held_bytes": ("gauge", "Bytes a component holds, by class (video, clips, snapshots, results, "
                                 "records)", ("component", "class")),
    "ggvision_disk_evicted_bytes": ("counter", "Bytes the disk budget made a component give up, by class",
                                    ("component", "class")),
    "ggvision_disk_write_bytes_per_second": ("gauge", "Bytes written to the machine's disks per second", ()),
    "ggvision_disk_write_latency_seconds": ("gauge", "Mean time per completed disk write over the last period", ()),
    "ggvision_gpu_utilization_ratio": ("gauge", "GPU busy ratio (NVML)", ("gpu",)),
    "ggvision_gpu_memory_used_bytes": ("gauge", "GPU memory in use (NVML)", ("gpu",)),
    "ggvision_gpu_memory_total_bytes": ("gauge", "GPU memory size (NVML)", ("gpu",)),
    "ggvision_gpu_temperature_celsius": ("gauge", "GPU core temperature (NVML)", ("gpu",)),
    "ggvision_gpu_power_watts": ("gauge", "GPU power draw (NVML)", ("gpu",)),
    "ggvision_gpu_encoder_utilization_ratio": ("gauge", "NVENC utilization ratio (NVML)", ("gpu",)),
    "ggvision_gpu_decoder_utilization_ratio": ("gauge", "NVDEC utilization ratio (NVML)", ("gpu",)),
    "ggvision_inference_latency_seconds": ("gauge", "Inference latency quantiles reported by the model",
                                           ("model", "quantile")),
    "ggvision_inference_batches_per_second": ("gauge", "Inference batches per second", ("model",)),
    "ggvision_model_load_seconds": ("gauge", "Time the model took to load", ("model",)),
    "ggvision_inference_errors": ("counter", "Inference errors (accumulated across inference restarts)", ("model",)),
    "ggvision_inference_error_ratio": ("gauge", "Errors per run over the last reporting interval", ("model",)),
    "ggvision_inference_score_mean": ("gauge", "Mean detection score (confidence drift)", ("model",)),
    "ggvision_inference_provider_info": ("gauge", "Model version and ONNX Runtime provider (value 1)",
                                         ("model", "version", "provider")),
    # A/B arms (models.<id>.b): `model` is the configured model id, `arm` a (serving) or b (candidate)
    "ggvision_ab_latency_seconds": ("gauge", "Inference latency quantiles of an arm", ("model", "arm", "quantile")),
    "ggvision_ab_detections_per_frame": ("gauge", "Detections per frame of a label since the arm's model loaded",
                                         ("model", "arm", "label")),
    "ggvision_ab_confidence_ratio": ("gauge", "Share of an arm's recent scores in the 0.1-wide bucket ending at "
                                     "`bucket`", ("model", "arm", "bucket")),
    "ggvision_ab_agreement": ("gauge", "Shadow mode, since B loaded: A's and B's boxes by outcome (matched at "
                              "IoU >= 0.5, label_flips, a_only, b_only) and label (A's for a flip)",
                              ("model", "outcome", "label")),
    "ggvision_ab_b_skipped_frames": ("gauge", "Shadow mode: A's frames not offered to B because A had frames "
                                     "waiting, since B loaded", ("model",)),
    "ggvision_ab_b_failures": ("gauge", "Inference runs of B that raised or gave non-finite output (B's errors)",
                               ("model",)),
    "ggvision_endpoint_up": ("gauge", "1 when the last TCP connect to the endpoint succeeded", ("endpoint",)),
    "ggvision_endpoint_latency_seconds": ("gauge", "TCP connect time of the last successful probe", ("endpoint",)),
    "ggvision_endpoint_loss_ratio": ("gauge", "Failed probes among the last N", ("endpoint",)),
    "ggvision_network_sent_bytes": ("counter", "Bytes sent on all interfaces but loopback", ()),
    "ggvision_uplink_backlog_bytes": ("gauge", "Bytes waiting in the uplink store per priority", ("priority",)),
    "ggvision_camera_input_fps": ("gauge", "Frames per second received from the camera (capture)", ("camera",)),
    "ggvision_camera_decoded_fps": ("gauge", "Frames per second decoded for analytics (capture)", ("camera",)),
    "ggvision_camera_detection_fps": ("gauge", "Detection messages per second for the camera", ("camera",)),
    "ggvision_camera_up": ("gauge", "1 when capture reports the camera connected", ("camera",)),
    "ggvision_camera_frame_age_seconds": ("gauge", "Seconds since the camera's last frame descriptor", ("camera",)),
    "ggvision_camera_decoder_info": ("gauge", "The decoder the camera's connection got: cpu or cuda (NVDEC) "
                                     "(capture's hwDecode; value 1)", ("camera", "decoder")),
    "ggvision_component_up": ("gauge", "1 when the component is RUNNING or FINISHED", ("component",)),
    "ggvision_component_state": ("gauge", "The component's lifecycle state (value 1)", ("component", "state")),
    "ggvision_component_restarts": ("counter", "Restarts seen (new process generation or ERRORED/BROKEN)",
                                     ("component",)),
    "ggvision_component_info": ("gauge", "The component's version (value 1)", ("component", "version")),
    "ggvision_uptime_seconds": ("gauge", "Seconds since com.ggvision.Health started", ()),
    "ggvision_health_alerts_active": ("gauge", "Active alerts of each kind", ("alert",)),
    "ggvision_health_malformed_messages": ("counter", "Messages dropped as malformed, per topic", ("topic",)),
    "ggvision_line_crossings": ("counter", "Objects that crossed a counting line, by direction (in/out) and label "
                                "(the Filter's analytics, since its camera pipeline started)",
                                ("camera", "line", "direction", "label")),
    "ggvision_zone_occupancy": ("gauge", "Objects in an analytics zone now", ("camera", "zone")),
    "ggvision_zone_rule_hits": ("counter", "Zone rule alerts raised (loitering, overcrowding)", ("camera", "kind")),
    "ggvision_storage_errors": ("counter", "Writes that failed on a storage condition (disk-full, read-only, "
                                "permission-denied, io-error), as the component reports them",
                                ("component", "condition")),
    "ggvision_storage_degraded": ("gauge", "1 while the component cannot write for that condition: media is given "
                                  "up, event records and alerts wait in memory", ("component", "condition")),
}
# Counters are declared without their _total suffix: prometheus_client appends it.

# The CloudWatch metrics Health sends through the aws.greengrass.Cloudwatch component (topics.CLOUDWATCH_PUT):
# name -> CloudWatch unit (one of the units PutMetricData accepts). Each datapoint carries the dimension
# `coreName` (the thing name), which that component appends to every metric. Dashboards and alarms read these.
CLOUDWATCH: dict[str, str] = {
    "CpuUsage": "Percent",
    "MemoryAvailable": "Megabytes",
    "DiskFree": "Percent",
    "CamerasUp": "Count",
    "DetectionFps": "Count/Second",
    "InferenceLatencyP95": "Milliseconds",
    "InferenceErrorRate": "Percent",
    "AlertsActive": "Count",
}
