#include "agent/cost_model.h"

#include <xgboost/c_api.h>

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace ktune {
namespace {

absl::Status XgbError(const char* what) {
  return absl::InternalError(absl::StrCat("xgboost ", what, ": ", XGBGetLastError()));
}

}  // namespace

XgbCostModel::~XgbCostModel() {
  if (booster_) XGBoosterFree(booster_);
}

absl::Status XgbCostModel::Fit(const std::vector<float>& x, int width, const std::vector<float>& y,
                               uint64_t seed, const std::vector<float>& weights) {
  const bst_ulong rows = y.size();
  if (rows == 0 || x.size() != rows * width) {
    return absl::InvalidArgumentError("cost model: features and targets do not match");
  }
  DMatrixHandle train;
  if (XGDMatrixCreateFromMat(x.data(), rows, width, NAN, &train) != 0) return XgbError("matrix");
  XGDMatrixSetFloatInfo(train, "label", y.data(), rows);
  if (!weights.empty()) {
    if (weights.size() != rows) {
      XGDMatrixFree(train);
      return absl::InvalidArgumentError("cost model: one weight per row");
    }
    XGDMatrixSetFloatInfo(train, "weight", weights.data(), rows);
  }
  if (booster_) XGBoosterFree(booster_);
  booster_ = nullptr;
  BoosterHandle booster;
  if (XGBoosterCreate(&train, 1, &booster) != 0) {
    XGDMatrixFree(train);
    return XgbError("booster");
  }
  const std::pair<const char*, std::string> params[] = {
      {"objective", options_.objective},
      {"max_depth", std::to_string(options_.max_depth)},
      {"eta", std::to_string(options_.eta)},
      {"subsample", std::to_string(options_.subsample)},
      {"tree_method", options_.tree_method},
      {"nthread", "1"},
      {"verbosity", "0"},
      {"seed", std::to_string(seed % 2147483647)},
  };
  for (const auto& [k, v] : params) XGBoosterSetParam(booster, k, v.c_str());
  for (int i = 0; i < options_.rounds; ++i) {
    if (XGBoosterUpdateOneIter(booster, i, train) != 0) {
      XGBoosterFree(booster);
      XGDMatrixFree(train);
      return XgbError("training");
    }
  }
  XGDMatrixFree(train);
  booster_ = booster;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> XgbCostModel::Predict(const std::vector<float>& x,
                                                         int width) const {
  if (!booster_) return absl::FailedPreconditionError("cost model: Predict before Fit");
  const bst_ulong rows = x.size() / width;
  if (rows == 0) return std::vector<float>();
  DMatrixHandle test;
  if (XGDMatrixCreateFromMat(x.data(), rows, width, NAN, &test) != 0) return XgbError("matrix");
  bst_ulong len = 0;
  const float* out = nullptr;
  int rc = XGBoosterPredict(booster_, test, 0, 0, 0, &len, &out);
  std::vector<float> scores;
  if (rc == 0) scores.assign(out, out + len);
  XGDMatrixFree(test);
  if (rc != 0) return XgbError("prediction");
  return scores;
}

}  // namespace ktune
