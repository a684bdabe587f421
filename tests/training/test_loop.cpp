// training/: the epoch loop (loop.h) and the progress line (progress.h). The loop is checked
// through its hooks -- which run, in what order, with which step counts -- and by
// training a tiny classifier with plain_step; the bar by reading back what it writes
// into a temporary file.
#include <cstdio>
#include <string>
#include <vector>

#include "../helpers.h"

using namespace weft;

namespace {

// Eight points in the plane, x (8, 2): class 0 left of the vertical axis, class 1
// right of it, so one linear layer separates them.
data::TensorDataset two_halves() {
  Tensor x = tensor(std::vector<float>{-2, 1, -1, -1, -1.5f, 0.5f, -0.5f, 2,  //
                                       0.5f, -2, 1, 1, 1.5f, -0.5f, 2, 1},
                    {8, 2});
  Tensor y = tensor(std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1, 1});
  return data::TensorDataset(x, y);
}

// A constant learning rate that writes "schedule" into `log` at each of its steps, so
// a test sees where the loop steps it.
class LoggedLR : public optim::LRScheduler {
 public:
  LoggedLR(optim::Optimizer& opt, std::vector<std::string>& log) : LRScheduler(opt), log_(log) {}
  double lr_at(int64_t) const override {
    log_.push_back("schedule");
    return base_lr();
  }

 private:
  std::vector<std::string>& log_;
};

// Everything a Loop drives, for the two_halves data in batches of `batch`.
struct Setup {
  explicit Setup(int64_t batch) : loader(two_halves(), {.batch_size = batch}) {
    manual_seed(0);
    model = std::make_shared<nn::Linear>(2, 2);
    opt = std::make_unique<optim::SGD>(model->parameters(), optim::SGDOptions{.lr = 0.5});
  }
  std::shared_ptr<nn::Linear> model;
  std::unique_ptr<optim::SGD> opt;
  data::DataLoader loader;
};

// The whole of a temporary file, written by a ProgressBar, as text.
std::string read_back(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string text;
  char buf[256];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
  return text;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1)
    lines.push_back(text.substr(start, end - start));
  return lines;
}

// The mean cross-entropy of the model over all of two_halves.
double full_loss(nn::Module& model) {
  autograd::NoGradGuard no_grad;
  const data::TensorDataset d = two_halves();
  return nn::cross_entropy(model(d.x()), d.y()).item<double>();
}

}  // namespace

TEST_CASE("Loop runs epochs first_epoch..epochs-1 and calls its hooks in order", "[train]") {
  Setup s(4);  // 8 samples: 2 steps an epoch
  std::vector<std::string> log;
  LoggedLR schedule(*s.opt, log);
  std::FILE* out = std::tmpfile();
  REQUIRE(out != nullptr);
  const training::StepFn plain = training::plain_step(*s.model, *s.opt, 0.0);
  training::Loop loop{.opt = *s.opt, .schedule = schedule, .loader = s.loader, .device = kCPU, .epochs = 3,
                   .label = "run A ", .progress = {.out = out}};
  loop.step = [&](const std::optional<data::Batch>& b) {
    log.push_back("step");
    REQUIRE(b.has_value());
    return plain(b);
  };
  loop.epoch_begin = [&](int e) {
    log.push_back("begin " + std::to_string(e));
    CHECK(s.loader.epoch() == e);  // set before the hook: the shuffle order of epoch e
  };
  loop.before_step = [&](int64_t t) { log.push_back("before " + std::to_string(t)); };
  loop.after_step = [&](int64_t t) { log.push_back("after " + std::to_string(t)); };
  loop.epoch_end = [&](int e) { log.push_back("end " + std::to_string(e)); };

  const training::Throughput t = loop.run(/*first_epoch=*/1);  // a run resumed at epoch 1: epochs 1 and 2

  const std::vector<std::string> want = {
      "begin 1", "before 0", "step", "schedule", "after 1", "before 1", "step", "schedule", "after 2", "end 1",
      "begin 2", "before 2", "step", "schedule", "after 3", "before 3", "step", "schedule", "after 4", "end 2"};
  CHECK(log == want);
  CHECK(s.opt->steps_taken() == 4);
  CHECK(schedule.last_step() == 4);
  CHECK(t.samples == 16);  // two epochs of 8

  // One bar per epoch, labelled, each ending with the line finish() draws.
  const std::string text = read_back(out);
  std::fclose(out);
  INFO(text);
  CHECK(text.find("run A epoch 1/3") == std::string::npos);
  CHECK(text.find("run A epoch 2/3") != std::string::npos);
  CHECK(text.find("run A epoch 3/3") != std::string::npos);
  CHECK(text.find("2/2 loss") != std::string::npos);
}

TEST_CASE("Loop without a step hook says so", "[train]") {
  Setup s(4);
  optim::StepLR schedule(*s.opt, 1);
  training::Loop loop{.opt = *s.opt, .schedule = schedule, .loader = s.loader, .device = kCPU, .epochs = 1};
  REQUIRE_THROWS_WITH(loop.run(), Catch::Contains("the step hook is not set"));
}

TEST_CASE("Throughput counts the samples of every rank in each step", "[train]") {
  Setup s(3);  // batches of 3, 3 and 2
  optim::StepLR schedule(*s.opt, 1000);
  training::Loop loop{.opt = *s.opt, .schedule = schedule, .loader = s.loader, .device = kCPU, .epochs = 2,
                   .show_progress = false, .step = training::plain_step(*s.model, *s.opt, 0.0)};
  CHECK(loop.run().samples == 16);  // 8 an epoch, the short last batch counted as it is

  // As if three data-parallel ranks each had a batch like this one in every step.
  loop.ranks_in_step = [](bool has_batch) { return has_batch ? 3 : 0; };
  CHECK(loop.run().samples == 3 * 16);
  CHECK(s.opt->steps_taken() == 2 * 3 + 2 * 3);
}

TEST_CASE("ranks_in_step returning 0 ends an epoch early", "[train]") {
  Setup s(2);  // 4 batches an epoch
  optim::StepLR schedule(*s.opt, 1000);
  int asked = 0, steps = 0, ends = 0;
  const training::StepFn plain = training::plain_step(*s.model, *s.opt, 0.0);
  training::Loop loop{.opt = *s.opt, .schedule = schedule, .loader = s.loader, .device = kCPU, .epochs = 2,
                   .show_progress = false};
  loop.step = [&](const std::optional<data::Batch>& b) {
    ++steps;
    return plain(b);
  };
  loop.epoch_begin = [&](int) { asked = 0; };
  loop.ranks_in_step = [&](bool has_batch) { return has_batch && ++asked <= 2 ? 1 : 0; };  // 2 steps an epoch
  loop.epoch_end = [&](int) { ++ends; };
  const training::Throughput t = loop.run();
  CHECK(steps == 2 * 2);
  CHECK(ends == 2);  // the epoch still ends properly
  CHECK(t.samples == 2 * 2 * 2);
}

TEST_CASE("a rank out of data steps without a batch while ranks_in_step keeps it in", "[train]") {
  Setup s(4);  // this rank: 2 batches an epoch; the other rank (pretended): 4
  optim::StepLR schedule(*s.opt, 1000);
  const training::StepFn plain = training::plain_step(*s.model, *s.opt, 0.0);
  std::vector<bool> had_batch;
  int without = 0;
  training::Loop loop{.opt = *s.opt, .schedule = schedule, .loader = s.loader, .device = kCPU, .epochs = 1,
                   .show_progress = false};
  // What DistributedDataParallel::join would answer: both ranks while this one has data,
  // then the other alone for two more steps, then none.
  loop.ranks_in_step = [&](bool has_batch) { return has_batch ? 2 : (++without <= 2 ? 1 : 0); };
  loop.step = [&](const std::optional<data::Batch>& b) {
    had_batch.push_back(b.has_value());
    if (b) return plain(b);
    s.opt->zero_grad();  // no gradient of its own: DDP would bring the others' here
    s.opt->step();
    return Tensor();
  };
  const training::Throughput t = loop.run();
  CHECK(had_batch == std::vector<bool>{true, true, false, false});
  CHECK(s.loader.epoch() == 1);  // one pass only: the loader was not asked to start epoch 1's
  CHECK(s.opt->steps_taken() == 4);
  CHECK(t.samples == 2 * 4 + 2 * 4);  // counted from this rank's batches: none in the last two steps
}

TEST_CASE("plain_step lowers the loss of a linear classifier on separable data", "[train]") {
  Setup s(4);
  optim::StepLR schedule(*s.opt, 1000);  // constant lr 0.5
  const double before = full_loss(*s.model);
  training::Loop loop{.opt = *s.opt, .schedule = schedule, .loader = s.loader, .device = kCPU, .epochs = 25,
                   .show_progress = false, .step = training::plain_step(*s.model, *s.opt, 0.0)};
  loop.run();
  const double after = full_loss(*s.model);
  INFO("cross-entropy before " << before << ", after 50 steps " << after);
  CHECK(before > 0.5);  // 1.11 from manual_seed(0)'s weights
  CHECK(after < 0.05);  // 0.024: the halves are separated with a margin

  // It returns the loss of the batch it was given, label smoothing included, at the
  // weights before its update.
  const data::TensorDataset d = two_halves();
  double want = 0;
  {
    autograd::NoGradGuard no_grad;
    want = nn::cross_entropy((*s.model)(d.x()), d.y(), 0.2).item<double>();
  }
  data::Batch all;
  all.x = d.x(), all.y = d.y();
  const Tensor loss = training::plain_step(*s.model, *s.opt, 0.2)(all);
  CHECK(loss.dim() == 0);
  CHECK(loss.item<double>() == Approx(want).epsilon(1e-6));
}

TEST_CASE("ProgressBar in plain mode prints a line at each quarter and one at the end", "[train]") {
  std::FILE* out = std::tmpfile();
  REQUIRE(out != nullptr);
  training::ProgressBar bar("epoch 1/2", 8, {.out = out, .plain = true});
  for (int i = 0; i < 8; ++i) bar.update(16, 0.5);
  const double rate = bar.finish();
  CHECK(rate > 0);

  const std::string text = read_back(out);
  std::fclose(out);
  INFO(text);
  CHECK(text.find('\r') == std::string::npos);  // no redraw in place
  const std::vector<std::string> lines = lines_of(text);
  REQUIRE(lines.size() == 4);  // after steps 2, 4 and 6, and finish()
  const char* counts[] = {" 2/8 ", " 4/8 ", " 6/8 ", " 8/8 "};
  for (size_t i = 0; i < lines.size(); ++i) {
    INFO(lines[i]);
    CHECK(lines[i].rfind("epoch 1/2 [", 0) == 0);
    CHECK(lines[i].find(counts[i]) != std::string::npos);
    CHECK(lines[i].find("loss 0.5000") != std::string::npos);  // the average of equal losses
    CHECK(lines[i].find(" samples/s") != std::string::npos);
    CHECK(lines[i].find(i + 1 < lines.size() ? " ETA " : " took ") != std::string::npos);
  }
  CHECK(lines[3].find("[==============================]") != std::string::npos);  // full at the end
}

TEST_CASE("ProgressBar draws plain lines into a file even unasked (not a terminal)", "[train]") {
  std::FILE* out = std::tmpfile();
  REQUIRE(out != nullptr);
  training::ProgressBar bar("x", 4, {.out = out});
  for (int i = 0; i < 4; ++i) bar.update(1, 1.0);
  bar.finish();
  const std::string text = read_back(out);
  std::fclose(out);
  CHECK(text.find('\r') == std::string::npos);
  CHECK(lines_of(text).size() == 4);  // after steps 1, 2 and 3, and finish()
}

TEST_CASE("ProgressBar names its unit: tokens/s for a language model", "[train]") {
  std::FILE* out = std::tmpfile();
  REQUIRE(out != nullptr);
  training::ProgressBar bar("train", 2, {.out = out, .unit = "tokens"});
  bar.update(16 * 128, 4.2);
  bar.update(16 * 128, 4.1);
  bar.finish();
  const std::string text = read_back(out);
  std::fclose(out);
  INFO(text);
  CHECK(text.find(" tokens/s ") != std::string::npos);
  CHECK(text.find("samples/s") == std::string::npos);
}
