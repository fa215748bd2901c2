"""The hermetic image lab (test harness): TLS registries and stand-in upstream images. Product code never imports it."""
