"""scripts/bench as a package: processes, servers, load, report and main."""
