"""One cold start, in a fresh interpreter: run as a script (`python -I -B import_probe.py SPEC`), never
imported, so nothing of the bench is loaded before the code it times.

SPEC is JSON: `paths` go first on sys.path (function code, then the layers, as Lambda orders /var/task and
/opt/python before the runtime's packages); `mode` says what to time:
- function: import the handler module;
- sdk: import boto3 and create one client per service in `services`;
- library: the sdk work, then import every module in `modules`;
- discover (untimed): import the handler module and report the services it created clients for, the
  modules it loaded from under `library_roots`, and where its packages came from.
The answer is one JSON line on stdout: wall seconds (perf_counter) and this process's CPU seconds, which
a loaded machine disturbs less.
"""

import importlib
import json
import sys
import time


def _sdk(services):
    import boto3

    for service in services:
        boto3.client(service)


def _discover(spec):
    import botocore.session

    services = []
    create_client = botocore.session.Session.create_client

    def recording_create_client(self, service_name, *args, **kwargs):
        services.append(service_name)
        return create_client(self, service_name, *args, **kwargs)

    botocore.session.Session.create_client = recording_create_client
    before = set(sys.modules)
    importlib.import_module(spec["module"])
    roots = tuple(spec["library_roots"])
    library_modules = [
        name
        for name, module in list(sys.modules.items())
        if name not in before and (getattr(module, "__file__", None) or "").startswith(roots)
    ]
    origins = {
        name: getattr(sys.modules.get(name), "__file__", None)
        for name in ("carebus", "aws_lambda_powertools", "boto3", "pydantic", "aws_xray_sdk")
    }
    return {"services": services, "library_modules": library_modules, "origins": origins}


def main():
    spec = json.loads(sys.argv[1])
    sys.path[:0] = spec["paths"]
    if spec["mode"] == "discover":
        print(json.dumps(_discover(spec)))
        return
    started, started_cpu = time.perf_counter(), time.process_time()
    if spec["mode"] == "function":
        importlib.import_module(spec["module"])
    else:
        _sdk(spec["services"])
        for name in spec.get("modules", ()):
            importlib.import_module(name)
    cpu_seconds = time.process_time() - started_cpu
    print(json.dumps({"seconds": time.perf_counter() - started, "cpu_seconds": cpu_seconds}))


if __name__ == "__main__":
    main()
