// Checks of records that come from outside (ImportRecords, `db import` of JSONL).
#ifndef KTUNE_DB_RECORD_CHECKS_H_
#define KTUNE_DB_RECORD_CHECKS_H_

#include "absl/status/status.h"
#include "db/record.h"

namespace ktune {

// What a record from outside must satisfy beyond its fields' types: time_ms above 0 and every
// other time and spread finite and not negative (an infinite time ranked as a real one, and no
// JSON export could hold it), max_rel_error finite and not negative, worker and source at most
// 4096 bytes. InvalidArgument naming the field.
absl::Status CheckImportedNumbers(const Record& r);

}  // namespace ktune

#endif  // KTUNE_DB_RECORD_CHECKS_H_
