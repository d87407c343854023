// moeq: one binary, one subcommand per file in src/cli/.
#include <cstdio>
int main() { std::puts("moeq"); return 0; }
