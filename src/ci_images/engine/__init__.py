"""The one engine client (docker SDK), the service containers it runs, and starting a ``dockerd`` when none answers."""
