#include "cli/command.h"

#include <iostream>

#include "proto/channel.h"

namespace ktune::cli {

int Fail(const std::string& command, const absl::Status& status) {
  std::cerr << "ktune " << command << ": " << status.message() << "\n";
  return kExitFailure;
}

int UsageError(const std::string& command, const std::string& message) {
  std::cerr << "ktune " << command << ": " << message << "\nRun 'ktune " << command
            << " --help' for usage.\n";
  return kExitUsage;
}

void AddDbOption(CLI::App* sub, std::string* path) {
  *path = "ktune.db";
  sub->add_option("--db", *path, "Tuning database file (SQLite)")->capture_default_str();
}

absl::StatusOr<std::unique_ptr<SqliteTuningDatabase>> OpenDatabase(const std::string& path) {
  return SqliteTuningDatabase::Open(path);
}

}  // namespace ktune::cli

namespace ktune::cli {

void AddClientTlsOptions(CLI::App* sub, ClientTls* tls) {
  sub->add_option("--tls-ca", tls->ca_file, "Connect with TLS, trusting this CA (PEM)");
  sub->add_option("--tls-cert", tls->cert_file, "Client certificate for mutual TLS (PEM)");
  sub->add_option("--tls-key", tls->key_file, "Its private key (PEM)");
}

}  // namespace ktune::cli
