// Checkpoints: exact resume, atomic writes, and clear errors for bad files.
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "../helpers.h"

using namespace weft;
namespace fs = std::filesystem;

namespace {
std::shared_ptr<nn::Sequential> small_mlp() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(6, 16), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(16, 3)});
}

// One AdamW step on batch i of a fixed synthetic stream.
void train_steps(nn::Module& m, optim::Optimizer& opt, int from, int to) {
  for (int i = from; i < to; ++i) {
    Generator g(100 + i);
    Tensor x = randn({8, 6}, {}, g);
    Tensor y = tensor(std::vector<int64_t>{0, 1, 2, 0, 1, 2, i % 3, (i + 1) % 3});
    opt.zero_grad();
    nn::cross_entropy(m(x), y, 0.1).backward();
    opt.step();
  }
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("weft_ckpt_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}
}  // namespace

TEST_CASE("N steps, save, load, M steps equals N+M steps bit for bit", "[checkpoint]") {
  const fs::path dir = temp_dir();
  const std::string path = (dir / "run.safetensors").string();
  manual_seed(5);
  auto a = small_mlp();
  optim::AdamW opt_a(a->parameters(), {.lr = 0.01});
  train_steps(*a, opt_a, 0, 7);

  manual_seed(5);
  auto b = small_mlp();
  optim::AdamW opt_b(b->parameters(), {.lr = 0.01});
  train_steps(*b, opt_b, 0, 4);
  optim::save_checkpoint(path, *b, &opt_b, {{"epoch", "0"}, {"step", "4"}});

  manual_seed(999);  // a fresh process would start from different random weights
  auto c = small_mlp();
  optim::AdamW opt_c(c->parameters(), {.lr = 0.01});
  auto meta = optim::load_checkpoint(path, *c, &opt_c);
  REQUIRE(meta.at("step") == "4");
  REQUIRE(opt_c.steps_taken() == 4);
  train_steps(*c, opt_c, 4, 7);
  auto sa = a->state_dict(), sc = c->state_dict();
  for (size_t i = 0; i < sa.size(); ++i) {
    INFO(sa[i].first);
    REQUIRE(equal(sa[i].second, sc[i].second));
  }
  // No temporary file is left beside the checkpoint.
  for (const auto& entry : fs::directory_iterator(dir)) REQUIRE(entry.path().filename() == "run.safetensors");
  fs::remove_all(dir);
}

TEST_CASE("extra tensors ride along: returned when asked for, skipped otherwise", "[checkpoint]") {
  test::TempDir dir;
  const std::string path = dir.file("extra.safetensors");
  auto m = small_mlp();
  optim::SGD opt(m->parameters(), {.lr = 0.1, .momentum = 0.9});
  train_steps(*m, opt, 0, 2);
  const nn::NamedTensors extra = {{"rank0.bucket.0.residual", tensor({1.f, -2.f, 3.f})},
                                  {"rank1.bucket.0.reductions", tensor({7}, {1})}};
  optim::save_checkpoint(path, *m, &opt, {{"epoch", "1"}}, extra);

  auto fresh = small_mlp();
  optim::SGD opt_fresh(fresh->parameters(), {.lr = 0.1, .momentum = 0.9});
  nn::NamedTensors got = {{"stale", ones({1})}};  // cleared first
  optim::load_checkpoint(path, *fresh, &opt_fresh, &got);
  REQUIRE(got.size() == 2);
  for (size_t i = 0; i < got.size(); ++i) {
    INFO(extra[i].first);
    CHECK(got[i].first == extra[i].first);
    CHECK(equal(got[i].second, extra[i].second));
  }
  // A loader that does not ask (train_mlp resuming train_ddp's checkpoint) skips them.
  auto plain = small_mlp();
  CHECK(optim::load_checkpoint(path, *plain, nullptr).at("epoch") == "1");
  const auto sp = plain->state_dict(), sm = m->state_dict();
  for (size_t i = 0; i < sp.size(); ++i) CHECK(equal(sp[i].second, sm[i].second));
}

TEST_CASE("checkpoint errors name the file and the problem", "[checkpoint][errors]") {
  const fs::path dir = temp_dir();
  const std::string path = (dir / "m.safetensors").string();
  auto m = small_mlp();
  optim::SGD opt(m->parameters(), {.lr = 0.1, .momentum = 0.9});
  train_steps(*m, opt, 0, 1);
  optim::save_checkpoint(path, *m, &opt);

  // A model of another shape: the key and both shapes are named.
  auto other = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(6, 8), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(8, 3)});
  REQUIRE_THROWS_WITH(optim::load_checkpoint(path, *other, nullptr),
                      Catch::Contains(path) && Catch::Contains("0.weight (checkpoint (16,6), model (8,6))"));
  // Model-only checkpoint loaded with an optimizer.
  const std::string model_only = (dir / "model_only.safetensors").string();
  optim::save_checkpoint(model_only, *m, nullptr);
  REQUIRE_THROWS_WITH(optim::load_checkpoint(model_only, *m, &opt), Catch::Contains("no optimizer state"));
  // A truncated file.
  const auto size = fs::file_size(path);
  fs::copy_file(path, dir / "cut.safetensors");
  fs::resize_file(dir / "cut.safetensors", size / 2);
  REQUIRE_THROWS_WITH(optim::load_checkpoint((dir / "cut.safetensors").string(), *m, &opt),
                      Catch::Contains("cut.safetensors"));
  // A missing file.
  REQUIRE_THROWS_WITH(optim::load_checkpoint((dir / "nope.safetensors").string(), *m, &opt),
                      Catch::Contains("nope.safetensors"));
  // A safetensors file that is not a weft checkpoint.
  nn::save_safetensors((dir / "plain.safetensors").string(), {{"weight", ones({2})}});
  REQUIRE_THROWS_WITH(optim::load_checkpoint((dir / "plain.safetensors").string(), *m, &opt),
                      Catch::Contains("not a weft checkpoint"));
  fs::remove_all(dir);
}

namespace {
// A copy of checkpoint `from` at `to` with `edit` applied to its tensors and metadata:
// the files a careless user or an attacker hands to --resume.
void rewrite(const std::string& from, const std::string& to,
             const std::function<void(nn::NamedTensors&, optim::Metadata&)>& edit) {
  nn::SafeTensors f = nn::load_safetensors(from);
  edit(f.tensors, f.metadata);
  nn::save_safetensors(to, f.tensors, f.metadata);
}
void drop(nn::NamedTensors& tensors, const std::string& name) {
  std::erase_if(tensors, [&](const auto& nt) { return nt.first == name; });
}
}  // namespace

TEST_CASE("optimizer state loads strictly: the kind, unknown and missing keys", "[checkpoint][optim][strict]") {
  test::TempDir dir;
  manual_seed(3);
  auto m = small_mlp();
  optim::SGD sgd(m->parameters(), {.lr = 0.1, .momentum = 0.9});
  optim::AdamW adamw(m->parameters(), {.lr = 0.01});
  optim::Adam adam(m->parameters(), {.lr = 0.01});
  train_steps(*m, sgd, 0, 2);
  train_steps(*m, adamw, 0, 2);
  train_steps(*m, adam, 0, 2);
  const std::string sgd_path = dir.file("sgd.safetensors"), adamw_path = dir.file("adamw.safetensors"),
                    adam_path = dir.file("adam.safetensors");
  optim::save_checkpoint(sgd_path, *m, &sgd);
  optim::save_checkpoint(adamw_path, *m, &adamw);
  optim::save_checkpoint(adam_path, *m, &adam);

  SECTION("another kind of optimizer: both kinds are named") {
    optim::AdamW fresh_adamw(m->parameters(), {.lr = 0.01});
    optim::SGD fresh_sgd(m->parameters(), {.lr = 0.1, .momentum = 0.9});
    REQUIRE_THROWS_WITH(optim::load_checkpoint(sgd_path, *m, &fresh_adamw),
                        Catch::Contains(sgd_path) && Catch::Contains("'sgd'") && Catch::Contains("'adamw'"));
    REQUIRE_THROWS_WITH(optim::load_checkpoint(adamw_path, *m, &fresh_sgd),
                        Catch::Contains("'adamw'") && Catch::Contains("'sgd'"));
    // Adam and AdamW keep the same buffers: only the recorded kind tells them apart.
    REQUIRE_THROWS_WITH(optim::load_checkpoint(adam_path, *m, &fresh_adamw),
                        Catch::Contains("'adam'") && Catch::Contains("'adamw'"));
    REQUIRE(fresh_adamw.steps_taken() == 0);  // nothing was loaded
  }
  SECTION("without the recorded kind (an older checkpoint), the keys still refuse it") {
    rewrite(sgd_path, dir.file("old.safetensors"), [](nn::NamedTensors&, optim::Metadata& meta) { meta.erase("optimizer"); });
    optim::AdamW fresh(m->parameters(), {.lr = 0.01});
    REQUIRE_THROWS_WITH(optim::load_checkpoint(dir.file("old.safetensors"), *m, &fresh),
                        Catch::Contains("adamw") && Catch::Contains("unexpected keys: 0.momentum_buffer") &&
                            Catch::Contains("missing keys: 0.exp_avg"));
    // And the state dicts themselves, without any file.
    optim::SGD fresh_sgd(m->parameters(), {.lr = 0.1, .momentum = 0.9});
    REQUIRE_THROWS_WITH(fresh_sgd.load_state_dict(adamw.state_dict()),
                        Catch::Contains("sgd") && Catch::Contains("unexpected keys: 0.exp_avg"));
    optim::SGD plain(m->parameters(), {.lr = 0.1});  // no momentum: keeps no buffers
    train_steps(*m, plain, 0, 1);
    REQUIRE_THROWS_WITH(plain.load_state_dict(sgd.state_dict()), Catch::Contains("0.momentum_buffer"));
    REQUIRE_THROWS_WITH(fresh_sgd.load_state_dict(plain.state_dict()), Catch::Contains("missing keys"));
  }
  SECTION("an unknown key") {
    rewrite(adamw_path, dir.file("bogus.safetensors"), [](nn::NamedTensors& t, optim::Metadata&) {
      t.emplace_back("optim.5.bogus", zeros({3}));
    });
    optim::AdamW fresh(m->parameters(), {.lr = 0.01});
    REQUIRE_THROWS_WITH(optim::load_checkpoint(dir.file("bogus.safetensors"), *m, &fresh),
                        Catch::Contains("bogus.safetensors") && Catch::Contains("unexpected keys: 5.bogus"));
    REQUIRE(fresh.steps_taken() == 0);
  }
  SECTION("a missing key, and all of them") {
    rewrite(adamw_path, dir.file("missing.safetensors"),
            [](nn::NamedTensors& t, optim::Metadata&) { drop(t, "optim.2.exp_avg_sq"); });
    optim::AdamW fresh(m->parameters(), {.lr = 0.01});
    REQUIRE_THROWS_WITH(optim::load_checkpoint(dir.file("missing.safetensors"), *m, &fresh),
                        Catch::Contains("missing keys: 2.exp_avg_sq"));
    nn::NamedTensors only_step = {{"step", full({}, 2.0, {.dtype = kInt64})}};
    REQUIRE_THROWS_WITH(fresh.load_state_dict(only_step), Catch::Contains("missing keys: 0.exp_avg, 0.exp_avg_sq"));
    // Before any step, no state is the right state.
    fresh.load_state_dict({{"step", full({}, 0.0, {.dtype = kInt64})}});
  }
  SECTION("a negative or malformed step count") {
    nn::NamedTensors state = adamw.state_dict();
    state[0].second = full({}, -3.0, {.dtype = kInt64});
    optim::AdamW fresh(m->parameters(), {.lr = 0.01});
    REQUIRE_THROWS_WITH(fresh.load_state_dict(state), Catch::Contains("'step' must be >= 0, got -3"));
    state[0].second = zeros({2}, {.dtype = kInt64});
    REQUIRE_THROWS_WITH(fresh.load_state_dict(state), Catch::Contains("'step' must hold one number"));
  }
  SECTION("the right kind loads, and the saved state replaces the optimizer's own") {
    optim::AdamW fresh(m->parameters(), {.lr = 0.01});
    train_steps(*m, fresh, 0, 1);
    optim::load_checkpoint(adamw_path, *m, &fresh);
    REQUIRE(fresh.steps_taken() == 2);
    const nn::NamedTensors a = adamw.state_dict(), b = fresh.state_dict();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) REQUIRE(equal(a[i].second, b[i].second));
  }
}

TEST_CASE("checkpoint metadata errors name the file, the field and the value", "[checkpoint][metadata]") {
  const optim::Metadata meta = {{"epoch", "abc"}, {"neg", "-2"}, {"tail", "12abc"}, {"big", "99999999999999999999"},
                                {"offset", "-5"}, {"lr", "nan"}, {"ok", "7"}, {"okf", "0.002"}};
  const std::string f = "run.safetensors";
  REQUIRE_THROWS_WITH(optim::metadata_int(f, meta, "missing"),
                      Catch::Contains("run.safetensors") && Catch::Contains("no 'missing' field"));
  REQUIRE_THROWS_WITH(optim::metadata_int(f, meta, "epoch"),
                      Catch::Contains("run.safetensors: metadata field 'epoch' is 'abc', not a whole number"));
  REQUIRE_THROWS_WITH(optim::metadata_int(f, meta, "neg"), Catch::Contains("'neg' is -2, outside [0, "));
  REQUIRE_THROWS_WITH(optim::metadata_int(f, meta, "tail"), Catch::Contains("'tail' is '12abc'"));
  REQUIRE_THROWS_WITH(optim::metadata_int(f, meta, "big"), Catch::Contains("'big' is '99999999999999999999'"));
  REQUIRE_THROWS_WITH(optim::metadata_uint(f, meta, "offset"), Catch::Contains("'offset' is '-5'"));
  REQUIRE_THROWS_WITH(optim::metadata_double(f, meta, "lr"), Catch::Contains("'lr' is 'nan', not a finite number"));
  REQUIRE(optim::metadata_int(f, meta, "ok", 1, 10) == 7);
  REQUIRE(optim::metadata_uint(f, meta, "ok") == 7);
  REQUIRE(optim::metadata_double(f, meta, "okf") == 0.002);

  // A file of another checkpoint format is refused by load_checkpoint itself.
  test::TempDir dir;
  auto m = small_mlp();
  optim::save_checkpoint(dir.file("a.safetensors"), *m, nullptr);
  rewrite(dir.file("a.safetensors"), dir.file("b.safetensors"),
          [](nn::NamedTensors&, optim::Metadata& md) { md["format"] = "weft-checkpoint-99"; });
  REQUIRE_THROWS_WITH(optim::load_checkpoint(dir.file("b.safetensors"), *m, nullptr),
                      Catch::Contains("b.safetensors") && Catch::Contains("'format' is 'weft-checkpoint-99'"));
}

TEST_CASE("a save removes the temporary files of killed saves to the same path", "[checkpoint][tmp]") {
  test::TempDir dir;
  const std::string path = dir.file("run.safetensors");
  // A pid that is surely gone: a child that has exited and been reaped.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  REQUIRE(child > 0);
  REQUIRE(::waitpid(child, nullptr, 0) == child);
  auto touch = [&](const std::string& name) { std::ofstream(dir.file(name)) << "partial"; };
  const std::string dead = "run.safetensors.tmp." + std::to_string(child) + ".0";
  const std::string mine_stale = "run.safetensors.tmp." + std::to_string(::getpid()) + ".999999";
  const std::string alive = "run.safetensors.tmp.1.0";  // pid 1 is always running
  const std::string other = "other.safetensors.tmp." + std::to_string(child) + ".0";
  for (const std::string& n : {dead, mine_stale, alive, other, std::string("run.safetensors.tmp.x")}) touch(n);
  auto m = small_mlp();
  optim::save_checkpoint(path, *m, nullptr);
  // The dead process's and this process's unused ones are gone; a live process's, another
  // target's and a name of another shape stay.
  REQUIRE(dir.listing() ==
          std::vector<std::string>{other, "run.safetensors", alive, "run.safetensors.tmp.x"});
}

TEST_CASE("check_can_save finds an unwritable checkpoint path at once, naming it", "[checkpoint][tmp]") {
  test::TempDir dir;
  REQUIRE_NOTHROW(nn::check_can_save(dir.file("ok.safetensors")));
  REQUIRE(dir.listing().empty());  // the probe leaves nothing behind
  const std::string no_dir = dir.file("no/such/dir/run.safetensors");
  REQUIRE_THROWS_WITH(nn::check_can_save(no_dir), Catch::Contains(no_dir) && Catch::Contains("No such file"));
  std::ofstream(dir.file("plain")) << "x";
  const std::string under_file = dir.file("plain/run.safetensors");
  REQUIRE_THROWS_WITH(nn::check_can_save(under_file), Catch::Contains(under_file) && Catch::Contains("Not a directory"));
  fs::create_directories(dir.file("adir"));
  REQUIRE_THROWS_WITH(nn::check_can_save(dir.file("adir")), Catch::Contains("adir") && Catch::Contains("is a directory"));
  if (::geteuid() != 0) {  // root writes anywhere
    fs::create_directories(dir.file("ro"));
    fs::permissions(dir.file("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    REQUIRE_THROWS_WITH(nn::check_can_save(dir.file("ro/run.safetensors")), Catch::Contains("ro/run.safetensors"));
    fs::permissions(dir.file("ro"), fs::perms::owner_all);
  }
}
