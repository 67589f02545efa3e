"""The Kubernetes runtime: manifests as pure functions (`objects`), placement per flavor (`placement`), pod
status from a watch (`reflector`), and the runtime itself (`runtime`)."""
