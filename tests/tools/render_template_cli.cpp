// Test support: renders a chat template file with a JSON context file (keys kept in file order)
// and prints the result without a trailing newline; a TemplateError goes to stderr with exit 2.
#include <fstream>
#include <iostream>
#include <sstream>

#include "engine/tokenizer/chat_template.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: render_template_cli TEMPLATE.jinja CONTEXT.json\n";
    return 64;
  }
  auto slurp = [](const char* path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(std::string("cannot read ") + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  try {
    xq::ChatTemplate tmpl(slurp(argv[1]));
    std::cout << tmpl.render_ordered(nlohmann::ordered_json::parse(slurp(argv[2])));
    return 0;
  } catch (const xq::TemplateError& e) {
    std::cerr << "TemplateError: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
