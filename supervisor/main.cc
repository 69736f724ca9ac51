// placeholder: jobworkerd entry point (being written)
int main() { return 1; }
