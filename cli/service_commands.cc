// The commands of DESIGN.md that need the tuning server, the measurement workers or the kernel
// registry: serve, worker, submit, watch, cancel and bench service. Their options
// are declared now so that scripts and --help are stable; until the component lands, running one
// says which component is missing and exits 1.
#include <iostream>

#include "cli/command.h"

namespace ktune::cli {
namespace {

struct Unavailable {
  std::string command;
  std::string needs;
};

void SetUnavailable(CLI::App* sub, Action* action, Unavailable u) {
  sub->callback([=] {
    *action = [=] {
      std::cerr
          << "ktune " << u.command << ": not available in this build: it needs " << u.needs
          << ".\nAvailable now: ktune db import|export|stats, ktune best, ktune jobs, "
             "ktune tune, ktune kernels, ktune space, ktune bench import|space|search|kernel.\n";
      return kExitFailure;
    };
  });
}

// Option storage for the declared commands: parsed and validated by CLI11, not yet used.
struct Options {
  std::string listen = "127.0.0.1:7470", db = "ktune.db", auth, tls_cert, tls_key, server,
              device = "cpu", job, spec;
  bool json = false;
};

}  // namespace

void RegisterServiceCommands(CLI::App& app, Action* action) {
  auto o = std::make_shared<Options>();

  CLI::App* serve = app.add_subcommand("serve", "Run the tuning server");
  serve->add_option("--listen", o->listen, "Address to listen on")->capture_default_str();
  serve->add_option("--db", o->db, "Tuning database file")->capture_default_str();
  serve->add_option("--auth", o->auth, "Token file (bearer tokens with roles)");
  serve->add_option("--tls-cert", o->tls_cert, "TLS certificate (PEM)");
  serve->add_option("--tls-key", o->tls_key, "TLS private key (PEM)");
  SetUnavailable(serve, action, {"serve", "the gRPC tuning server (server/)"});

  CLI::App* worker = app.add_subcommand("worker", "Run a measurement worker");
  worker->add_option("--server", o->server, "Server address HOST:PORT")->required();
  worker->add_option("--device", o->device, "cpu, cuda[:N] or replay:FILE")->capture_default_str();
  SetUnavailable(worker, action, {"worker", "the measurement worker (measurer/)"});

  CLI::App* submit = app.add_subcommand("submit", "Submit a fleet job (YAML or JSON spec)");
  submit->add_option("JOB", o->spec, "Job spec file")->required();
  submit->add_option("--server", o->server, "Server address");
  SetUnavailable(submit, action, {"submit", "the job scheduler of the tuning server (server/)"});

  CLI::App* watch = app.add_subcommand("watch", "Follow a job's progress until it ends");
  watch->add_option("JOB", o->job, "Job id")->required();
  watch->add_option("--server", o->server, "Server address");
  SetUnavailable(watch, action, {"watch", "the tuning server's WatchJob stream (server/)"});

  CLI::App* cancel = app.add_subcommand("cancel", "Cancel a job");
  cancel->add_option("JOB", o->job, "Job id")->required();
  cancel->add_option("--server", o->server, "Server address");
  SetUnavailable(cancel, action, {"cancel", "the tuning server (server/)"});

  CLI::App* bench = app.get_subcommand("bench");
  for (const auto& [name, description, needs] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"service", "Query and dispatch throughput of the server",
            "the tuning server (server/)"}}) {
    CLI::App* sub = bench->add_subcommand(name, description);
    sub->allow_extras();
    SetUnavailable(sub, action, {"bench " + name, needs});
  }
}

}  // namespace ktune::cli
