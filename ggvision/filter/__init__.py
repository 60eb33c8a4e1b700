"""com.ggvision.Filter: motion gate, detection filters, tracking into events, privacy redaction, compression
and the per-camera upload policies (the policy engine; the Uplink is only transport). See docs/filter.md."""
