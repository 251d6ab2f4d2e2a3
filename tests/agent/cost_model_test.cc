// XgbCostModel: the gradient-boosted trees that the `model` baseline and PPO's pool rank with.
#include "agent/cost_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace ktune {
namespace {

// 40 one-feature rows whose target peaks at x = 25 (a needle-free hill, as a tile size's).
void Hill(std::vector<float>& x, std::vector<float>& y) {
  for (int i = 0; i < 40; ++i) {
    x.push_back(static_cast<float>(i));
    y.push_back(-static_cast<float>((i - 25) * (i - 25)));
  }
}

// Position of the highest prediction.
size_t ArgMax(const std::vector<float>& v) {
  return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST(XgbCostModelTest, BothObjectivesRankTheFittedRowsAsTheirTargetsDo) {
  std::vector<float> x, y;
  Hill(x, y);
  for (const char* objective : {"reg:squarederror", "rank:pairwise"}) {
    XgbCostModel::Options options;
    options.objective = objective;
    XgbCostModel model(options);
    ASSERT_TRUE(model.Fit(x, 1, y, 7).ok()) << objective;
    auto scores = model.Predict(x, 1);
    ASSERT_TRUE(scores.ok()) << scores.status();
    ASSERT_EQ(scores->size(), x.size());
    // The best row is the hill's top or beside it, and rows far down the hill score below rows
    // near its top: what a search reads from the model is the order.
    EXPECT_NEAR(static_cast<double>(ArgMax(*scores)), 25.0, 1.0) << objective;
    EXPECT_GT((*scores)[24], (*scores)[5]) << objective;
    EXPECT_GT((*scores)[26], (*scores)[39]) << objective;
  }
}

// The ranking objective reads only the targets' order: targets moved by a monotone map give the
// same fit, where squared error fits their values and does not.
TEST(XgbCostModelTest, TheRankingObjectiveSeesOnlyTheTargetsOrder) {
  std::vector<float> x, y;
  Hill(x, y);
  std::vector<float> moved;
  for (float v : y) moved.push_back(10 * v + 1000);
  for (const char* objective : {"rank:pairwise", "reg:squarederror"}) {
    XgbCostModel::Options options;
    options.objective = objective;
    XgbCostModel a(options), b(options);
    ASSERT_TRUE(a.Fit(x, 1, y, 3).ok());
    ASSERT_TRUE(b.Fit(x, 1, moved, 3).ok());
    auto from_y = a.Predict(x, 1);
    auto from_moved = b.Predict(x, 1);
    ASSERT_TRUE(from_y.ok() && from_moved.ok());
    if (std::string(objective) == "rank:pairwise") {
      EXPECT_EQ(*from_y, *from_moved);
    } else {
      EXPECT_NE(*from_y, *from_moved);
    }
  }
}

TEST(XgbCostModelTest, AnUnknownObjectiveIsAnErrorAndTheModelStaysUnfitted) {
  std::vector<float> x, y;
  Hill(x, y);
  XgbCostModel::Options options;
  options.objective = "no:such-objective";
  XgbCostModel model(options);
  absl::Status fit = model.Fit(x, 1, y, 1);
  EXPECT_FALSE(fit.ok());
  EXPECT_NE(fit.message().find("xgboost"), std::string::npos) << fit;
  EXPECT_EQ(model.Predict(x, 1).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(XgbCostModelTest, MismatchedRowsAreRefused) {
  XgbCostModel model;
  EXPECT_EQ(model.Fit({1.f, 2.f, 3.f}, 2, {1.f, 2.f}, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model.Predict({1.f}, 1).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ktune
