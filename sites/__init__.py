"""Sites as desired state: from the site file (ggvision.config.site) to what each stage's deployment and each
device should carry.

- plan.py  the stage deployments' configuration merges the file asks for, compared with the deployment
           documents (deploy/deployments), and each device's desired state (its cameras and sensors)
- cli.py   `ggvision site validate|plan|apply|status`
- camera_probe.py, camera_add.py, camera_cli.py   `ggvision camera probe|add`: probe an RTSP camera, store its
           credentials in Secrets Manager, add it to the site file
"""
