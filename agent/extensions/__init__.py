"""Extensions: components outside the pipelines, as the Collector's `extensions:` section.

Each is defined under `extensions:` and runs only when `service.extensions` lists its
id. The service starts them before the pipelines and stops them after. One that
watches the pipelines (`health_check`) also has `ready()` and `not_ready()`, called
as the service becomes ready and as it begins to stop.
"""
